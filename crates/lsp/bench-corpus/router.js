// A tiny HTTP-style router, written for modeld's completion benchmark.

class Router {
  constructor() {
    this.routes = [];
  }

  add(method, pattern, handler) {
    const keys = [];
    const source = pattern.replace(/:(\w+)/g, (_, key) => {
      keys.push(key);
      return "([^/]+)";
    });
    this.routes.push({ method, regex: new RegExp(`^${source}$`), keys, handler });
    return this;
  }

  get(pattern, handler) {
    return this.add("GET", pattern, handler);
  }

  post(pattern, handler) {
    return this.add("POST", pattern, handler);
  }

  match(method, path) {
    for (const route of this.routes) {
      if (route.method !== method) {
        continue;
      }
      const found = route.regex.exec(path);
      if (found) {
        const params = {};
        route.keys.forEach((key, index) => {
          params[key] = decodeURIComponent(found[index + 1]);
        });
        return { handler: route.handler, params };
      }
    }
    return null;
  }

  handle(request) {
    const matched = this.match(request.method, request.path);
    if (!matched) {
      return { status: 404, body: "not found" };
    }
    return matched.handler({ ...request, params: matched.params });
  }
}

module.exports = { Router };
