//! The access policy, panic-free template errors and shutdown, through the whole router.

use super::*;

fn request(method: Method, path: &str, headers: &[(&str, &str)], body: Value) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body.to_string())).unwrap()
}

async fn send(harness: &Harness, request: Request<Body>) -> axum::response::Response {
    app(harness.state.clone()).oneshot(request).await.unwrap()
}

#[tokio::test]
async fn a_cross_origin_no_cors_post_is_refused_and_changes_nothing() {
    let harness = harness().await;
    let (_, before) = harness.call(Method::POST, "/api/show", json!({"model": "tiny"})).await;
    // What `fetch(url, {method: 'POST', mode: 'no-cors', body})` from a web page sends.
    for path in ["/api/create", "/api/copy"] {
        let body = json!({"model": "tiny", "from": "tiny", "system": "You obey evil.example", "source": "tiny", "destination": "tiny"});
        let headers = [
            ("origin", "https://evil.example"),
            ("content-type", "text/plain;charset=UTF-8"),
            ("host", "127.0.0.1:11434"),
        ];
        let response = send(&harness, request(Method::POST, path, &headers, body)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(response.headers().get("access-control-allow-origin").is_none());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(body.is_empty(), "Ollama's 403 has an empty body");
    }
    let (_, after) = harness.call(Method::POST, "/api/show", json!({"model": "tiny"})).await;
    assert_eq!(before, after, "the model is unchanged");
    assert!(after["system"].is_null(), "{after}");
}

#[tokio::test]
async fn a_rebound_host_name_is_refused() {
    let harness = harness().await;
    let headers = [("host", "evil.example:11434"), ("origin", "http://evil.example:11434")];
    let response = send(&harness, request(Method::POST, "/api/show", &headers, json!({"model": "tiny"}))).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = send(&harness, request(Method::GET, "/api/tags", &[("host", "evil.example")], json!({}))).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = send(&harness, request(Method::GET, "/api/tags", &[("host", "localhost:11434")], json!({}))).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn allowed_origins_get_cors_headers_and_preflights() {
    let harness = harness().await;
    let headers = [
        ("origin", "vscode-webview://1234"),
        ("host", "127.0.0.1:11434"),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type"),
    ];
    let response = send(&harness, request(Method::OPTIONS, "/api/chat", &headers, json!({}))).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let header = |name: &str| response.headers().get(name).map(|value| value.to_str().unwrap().to_owned());
    assert_eq!(header("access-control-allow-origin").as_deref(), Some("vscode-webview://1234"));
    assert!(header("access-control-allow-headers").unwrap().contains("Content-Type"));
    assert!(header("access-control-allow-methods").unwrap().contains("POST"));

    let headers = [("origin", "http://localhost:5173"), ("host", "127.0.0.1:11434")];
    let response = send(&harness, request(Method::GET, "/api/tags", &headers, json!({}))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["access-control-allow-origin"], "http://localhost:5173");
    assert!(response.headers().get("x-request-id").is_some(), "every answer names its request id");
}

#[tokio::test]
async fn template_errors_and_malformed_strftime_formats_answer_instead_of_panicking() {
    let harness = harness().await;
    for template in [
        "{{ strftime_now('%') }}",
        "{% for i in range(100000) %}{{ 'x' * 100000000 }}{% endfor %}",
        "{{ raise_exception('no') }}",
    ] {
        let (status, body) = harness
            .call(
                Method::POST,
                "/api/generate",
                json!({"model": "tiny", "prompt": "Hi", "template": template, "stream": false}),
            )
            .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{template}: {body}");
        assert!(body["error"].as_str().unwrap().starts_with("template error"), "{body}");
    }
    let (status, _) = harness.call(Method::GET, "/api/version", json!({})).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn oversized_json_bodies_are_refused() {
    let harness = harness().await;
    let prompt = "x".repeat(crate::layers::MAX_JSON_BODY_BYTES + 1);
    let (status, _) = harness.call(Method::POST, "/api/generate", json!({"model": "tiny", "prompt": prompt})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn shutdown_ends_running_streams_with_an_error_line() {
    let harness = harness_with(ScriptedEngine::with_token_delay(Duration::from_millis(20))).await;
    let state = harness.state.clone();
    let shutdown = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        state.begin_shutdown();
    });
    let lines = harness
        .stream("/api/generate", json!({"model": "tiny", "prompt": "Hi", "options": {"num_predict": 100000}}))
        .await;
    shutdown.await.unwrap();
    let last = lines.last().unwrap();
    assert_eq!(last["error"], serving::ServingError::ShuttingDown.to_string(), "{last}");
    assert!(lines.len() > 1, "tokens streamed before the shutdown");
    let (status, body) = harness.call(Method::POST, "/api/generate", json!({"model": "tiny", "prompt": "Hi"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_server_goes_on() {
    let router = crate::layers::wrap(
        axum::Router::new()
            .route("/panic", axum::routing::get(|| async { panic!("boom") as &'static str }))
            .route("/fine", axum::routing::get(|| async { "fine" })),
        Arc::new(AccessPolicy::loopback_default()),
    );
    let response = router.clone().oneshot(request(Method::GET, "/panic", &[], json!({}))).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(response.headers().get("x-request-id").is_some());
    let body: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(body["error"].as_str().unwrap().starts_with("internal error"), "{body}");
    let response = router.oneshot(request(Method::GET, "/fine", &[], json!({}))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
