//! `modeld mcp`: the MCP server on stdio for clients that only launch processes (Claude
//! Desktop), forwarding to the daemon's `/mcp` endpoint, so that one daemon (and one copy of
//! each model in memory) serves every agent. Progress, cancellation and list changes pass
//! through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, ClientCapabilities, ClientConfig, ClientRequest,
    Implementation, ListResourcesResult, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ProgressToken, ReadResourceRequestParams, ReadResourceResponse, ServerConfig, ServerResult,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RequestContext};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ErrorData, Peer, RoleClient, RoleServer, ServerHandler, ServiceExt};

/// Where progress of an upstream call goes: the downstream client and its token.
type ProgressRoutes = Arc<Mutex<HashMap<ProgressToken, (Peer<RoleServer>, ProgressToken)>>>;

/// The connection to the daemon, seen from the client side.
#[derive(Clone, Default)]
struct Upstream {
    routes: ProgressRoutes,
    /// The stdio client, once it has initialized, for list changes.
    downstream: Arc<Mutex<Option<Peer<RoleServer>>>>,
}

impl Upstream {
    /// The stdio client, once it has initialized.
    fn downstream_peer(&self) -> Option<Peer<RoleServer>> {
        crate::lock(&self.downstream).clone()
    }
}

impl ClientHandler for Upstream {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("modeld-mcp-stdio", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(rmcp::model::ProtocolVersion::LATEST_WITH_INITIALIZE)
    }

    async fn on_progress(&self, params: ProgressNotificationParam, _context: NotificationContext<RoleClient>) {
        let route = crate::lock(&self.routes).get(&params.progress_token).cloned();
        if let Some((peer, token)) = route {
            let mut forwarded = ProgressNotificationParam::new(token, params.progress);
            forwarded.total = params.total;
            forwarded.message = params.message;
            let _ = peer.notify_progress(forwarded).await;
        }
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        if let Some(peer) = self.downstream_peer() {
            let _ = peer.notify_tool_list_changed().await;
        }
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        if let Some(peer) = self.downstream_peer() {
            let _ = peer.notify_resource_list_changed().await;
        }
    }
}

/// The stdio server: every request goes to the daemon.
struct Proxy {
    daemon: Peer<RoleClient>,
    info: ServerConfig,
    upstream: Upstream,
}

fn forwarded_error(error: rmcp::ServiceError) -> ErrorData {
    match error {
        rmcp::ServiceError::McpError(error) => error,
        other => ErrorData::internal_error(format!("the modeld daemon did not answer: {other}"), None),
    }
}

impl ServerHandler for Proxy {
    fn get_info(&self) -> ServerConfig {
        self.info.clone()
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        *crate::lock(&self.upstream.downstream) = Some(context.peer.clone());
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.daemon.list_tools(request).await.map_err(forwarded_error)
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        self.daemon.list_resources(request).await.map_err(forwarded_error)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.daemon.read_resource(request).await.map(Into::into).map_err(forwarded_error)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let handle = self
            .daemon
            .send_request_with_option(
                ClientRequest::CallToolRequest(CallToolRequest::new(request)),
                PeerRequestOptions::no_options(),
            )
            .await
            .map_err(forwarded_error)?;
        let route = context.meta.get_progress_token().map(|downstream| (context.peer.clone(), downstream));
        let upstream_token = handle.progress_token.clone();
        let request_id = handle.id.clone();
        if let Some(route) = route {
            crate::lock(&self.upstream.routes).insert(upstream_token.clone(), route);
        }
        let answer = tokio::select! {
            answer = handle.await_response() => Some(answer),
            () = context.ct.cancelled() => None,
        };
        crate::lock(&self.upstream.routes).remove(&upstream_token);
        match answer {
            Some(Ok(ServerResult::CallToolResult(result))) => Ok(result.into()),
            Some(Ok(_)) => Err(ErrorData::internal_error("the modeld daemon gave an unexpected answer", None)),
            Some(Err(error)) => Err(forwarded_error(error)),
            None => {
                let cancelled = rmcp::model::CancelledNotificationParam::new(
                    Some(request_id),
                    Some("cancelled by the client".into()),
                );
                let _ = self.daemon.notify_cancelled(cancelled).await;
                Err(ErrorData::internal_error("cancelled", None))
            }
        }
    }
}

/// Serves MCP on stdin and stdout, forwarding to the daemon's `/mcp` at `endpoint`, until
/// the client closes stdin.
pub async fn serve_stdio_proxy(endpoint: &str) -> Result<(), String> {
    let upstream = Upstream::default();
    let transport = StreamableHttpClientTransport::from_uri(endpoint.to_owned());
    let daemon = upstream
        .clone()
        .serve(transport)
        .await
        .map_err(|error| format!("cannot reach the modeld daemon's MCP endpoint {endpoint}: {error}"))?;
    let info = daemon
        .peer()
        .peer_info()
        .map(|info| {
            ServerConfig::new(info.capabilities.clone())
                .with_server_info(
                    info.server_info
                        .clone()
                        .unwrap_or_else(|| Implementation::new("modeld", env!("CARGO_PKG_VERSION"))),
                )
                .with_instructions(info.instructions.clone().unwrap_or_default())
        })
        .ok_or("the modeld daemon's MCP endpoint did not introduce itself")?;
    let proxy = Proxy { daemon: daemon.peer().clone(), info, upstream };
    let running = proxy.serve(rmcp::transport::stdio()).await.map_err(|error| format!("MCP over stdio: {error}"))?;
    let _ = running.waiting().await;
    drop(daemon);
    Ok(())
}
