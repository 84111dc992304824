//! `RegistryClient`: requests to one repository of one registry, with the Bearer token dance
//! and bounded reads of response bodies.

use std::sync::{Arc, Mutex};

use model_store::ModelName;
use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};

use crate::auth::{parse_bearer_challenge, BearerChallenge};
use crate::{Error, RegistryOptions};

/// Largest manifest accepted (Ollama's are a few KiB).
pub(crate) const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Largest token or error body read.
const MAX_SMALL_BODY_BYTES: usize = 64 << 10;

/// A request to build, possibly twice (again after fetching a token).
pub(crate) struct RequestSpec {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<bytes::Bytes>,
}

impl RequestSpec {
    pub(crate) fn new(method: Method, url: Url) -> RequestSpec {
        RequestSpec { method, url, headers: HeaderMap::new(), body: None }
    }

    pub(crate) fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> RequestSpec {
        if let Ok(value) = value.parse() {
            self.headers.insert(name, value);
        }
        self
    }

    pub(crate) fn body(mut self, body: bytes::Bytes) -> RequestSpec {
        self.body = Some(body);
        self
    }
}

/// One repository (`<namespace>/<model>`) on one registry. Clones share the token.
#[derive(Clone)]
pub(crate) struct RegistryClient {
    http: reqwest::Client,
    base: Url,
    repository: String,
    /// The access asked of the token service: `pull`, or `push,pull`.
    actions: &'static str,
    token: Arc<Mutex<Option<String>>>,
}

impl RegistryClient {
    /// A client for `name`'s repository; `actions` is `pull` or `push,pull`.
    pub(crate) fn new(
        name: &ModelName,
        options: RegistryOptions,
        actions: &'static str,
    ) -> Result<RegistryClient, Error> {
        if name.insecure_scheme && !options.insecure {
            return Err(Error::InsecureProtocol);
        }
        let scheme = if options.insecure { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{}/", name.host))
            .map_err(|error| Error::Protocol(format!("invalid registry host {:?}: {error}", name.host)))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("modeld/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(30))
            // A registry that stops sending fails the transfer (which resumes on the next try)
            // instead of holding it for ever.
            .read_timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(Error::from)?;
        Ok(RegistryClient {
            http,
            base,
            repository: format!("{}/{}", name.namespace, name.model),
            actions,
            token: Arc::default(),
        })
    }

    /// `<base>/v2/<repository>/<rest>`.
    pub(crate) fn url(&self, rest: &str) -> Url {
        self.base.join(&format!("v2/{}/{rest}", self.repository)).expect("registry paths are valid URLs")
    }

    /// Resolves a `Location` header against the registry (it may be relative).
    pub(crate) fn resolve(&self, location: &str) -> Result<Url, Error> {
        self.base
            .join(location)
            .map_err(|error| Error::Protocol(format!("invalid upload location {location:?}: {error}")))
    }

    /// Sends the request with the token when it goes to the registry's host. A `401` with a
    /// Bearer challenge fetches a token and retries once; a second `401` is
    /// [`Error::Unauthorized`]. Other statuses are returned for the caller to judge.
    pub(crate) async fn send(&self, spec: &RequestSpec) -> Result<reqwest::Response, Error> {
        let response = self.send_once(spec).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(parse_bearer_challenge)
            .ok_or(Error::Unauthorized)?;
        let token = self.fetch_token(&challenge).await?;
        *self.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token);
        let response = self.send_once(spec).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(Error::Unauthorized);
        }
        Ok(response)
    }

    async fn send_once(&self, spec: &RequestSpec) -> Result<reqwest::Response, Error> {
        let mut request = self.http.request(spec.method.clone(), spec.url.clone()).headers(spec.headers.clone());
        let token = self.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if let Some(token) = token.filter(|_| self.same_host(&spec.url)) {
            request = request.bearer_auth(token);
        }
        if let Some(body) = &spec.body {
            request = request.body(body.clone());
        }
        Ok(request.send().await?)
    }

    /// Whether `url` is on the registry's host (the token goes nowhere else).
    fn same_host(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    /// Asks the challenge's realm for a token. The realm must be on the registry's host name
    /// (any port) and, unless the registry itself is plain http, use https.
    async fn fetch_token(&self, challenge: &BearerChallenge) -> Result<String, Error> {
        let mut realm = Url::parse(&challenge.realm)
            .map_err(|error| Error::Protocol(format!("invalid token realm {:?}: {error}", challenge.realm)))?;
        let scheme_allowed = realm.scheme() == "https" || (realm.scheme() == "http" && self.base.scheme() == "http");
        if !scheme_allowed || realm.host_str() != self.base.host_str() {
            return Err(Error::Protocol(format!(
                "token realm {} is not on the registry's host {}",
                challenge.realm,
                self.base.host_str().unwrap_or_default()
            )));
        }
        let scope =
            challenge.scope.clone().unwrap_or_else(|| format!("repository:{}:{}", self.repository, self.actions));
        {
            let mut query = realm.query_pairs_mut();
            if let Some(service) = &challenge.service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", &scope);
        }
        let response = self.http.get(realm).send().await?;
        let status = response.status();
        let body = read_bounded(response, MAX_SMALL_BODY_BYTES).await?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Error::Unauthorized);
        }
        if !status.is_success() {
            return Err(Error::Registry(format!("token request failed: {}", error_text(status, &body))));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|error| Error::Protocol(format!("invalid token response: {error}")))?;
        parsed.token.or(parsed.access_token).filter(|token| !token.is_empty()).ok_or(Error::Unauthorized)
    }
}

/// Reads at most `limit` bytes of a body; a longer body is a protocol error.
pub(crate) async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(Error::Protocol(format!("response from {} is larger than {limit} bytes", response.url())));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error status as text: the registry's first error message when its body has the
/// distribution spec's `{"errors":[{"code","message"}]}`, else the status.
pub(crate) fn error_text(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(Errors { errors }) if !errors.is_empty() => {
            let first = &errors[0];
            let code = first.code.to_ascii_lowercase().replace('_', " ");
            match (code.is_empty(), first.message.is_empty()) {
                (false, false) => format!("{code}: {}", first.message),
                (false, true) => code,
                _ => first.message.clone(),
            }
        }
        _ => format!("registry answered {status}"),
    }
}

/// Reads an error response into [`Error::Registry`] (401 and 403 as [`Error::Unauthorized`]).
pub(crate) async fn status_error(response: reqwest::Response) -> Error {
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Error::Unauthorized;
    }
    let body = read_bounded(response, MAX_SMALL_BODY_BYTES).await.unwrap_or_default();
    Error::Registry(error_text(status, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_read_as_their_first_message() {
        let body = br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":"x"}]}"#;
        assert_eq!(error_text(StatusCode::NOT_FOUND, body), "blob unknown: blob unknown to registry");
        assert_eq!(error_text(StatusCode::BAD_GATEWAY, b"<html>"), "registry answered 502 Bad Gateway");
        assert_eq!(error_text(StatusCode::BAD_REQUEST, br#"{"errors":[]}"#), "registry answered 400 Bad Request");
    }

    #[test]
    fn names_map_to_registry_urls() {
        let name = ModelName::parse("127.0.0.1:5000/team/tiny:v1").unwrap();
        let client = RegistryClient::new(&name, RegistryOptions { insecure: true, part_bytes: None }, "pull").unwrap();
        assert_eq!(client.url("manifests/v1").as_str(), "http://127.0.0.1:5000/v2/team/tiny/manifests/v1");
        assert_eq!(
            client.resolve("/v2/team/tiny/blobs/uploads/abc?state=x").unwrap().as_str(),
            "http://127.0.0.1:5000/v2/team/tiny/blobs/uploads/abc?state=x"
        );
        let secure =
            RegistryClient::new(&ModelName::parse("smollm2").unwrap(), RegistryOptions::default(), "pull").unwrap();
        assert_eq!(
            secure.url("manifests/latest").as_str(),
            "https://registry.ollama.ai/v2/library/smollm2/manifests/latest"
        );
        let http_name = ModelName::parse("http://127.0.0.1:5000/team/tiny").unwrap();
        assert!(matches!(
            RegistryClient::new(&http_name, RegistryOptions::default(), "pull"),
            Err(Error::InsecureProtocol)
        ));
    }
}
