//! Chat templates rendered in worker processes under a memory limit, so that a template which
//! allocates without bound (a string doubled by `~` in a loop, say, which neither fuel nor the
//! output cap can see) ends a worker instead of the daemon.
//!
//! The worker is the daemon's own binary started with a hidden subcommand: it reads one JSON
//! [`OwnedRender`] a line on stdin and answers one JSON reply a line on stdout. A worker that
//! dies (allocation failure under its limit) is replaced on the next render.

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{render_chat, ChatTemplateInput, RenderError, TemplateMessage};

/// Idle workers kept for reuse; more concurrent renders start more, which exit afterwards.
const MAX_IDLE_WORKERS: usize = 4;

/// Everything one render needs, owned, as it crosses the pipe.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OwnedRender {
    /// The Jinja template.
    pub template: String,
    /// The conversation.
    pub messages: Vec<TemplateMessage>,
    /// Tool schemas.
    pub tools: Option<Vec<Value>>,
    /// Append the assistant header.
    pub add_generation_prompt: bool,
    /// Beginning-of-sequence text.
    pub bos_token: Option<String>,
    /// End-of-sequence text.
    pub eos_token: Option<String>,
    /// `enable_thinking`.
    pub enable_thinking: Option<bool>,
    /// `reasoning_effort`.
    pub reasoning_effort: Option<String>,
}

impl OwnedRender {
    /// The owned form of a render of `template` with `input`.
    pub fn new(template: &str, input: &ChatTemplateInput<'_>) -> OwnedRender {
        OwnedRender {
            template: template.to_owned(),
            messages: input.messages.to_vec(),
            tools: input.tools.map(<[Value]>::to_vec),
            add_generation_prompt: input.add_generation_prompt,
            bos_token: input.bos_token.map(str::to_owned),
            eos_token: input.eos_token.map(str::to_owned),
            enable_thinking: input.enable_thinking,
            reasoning_effort: input.reasoning_effort.map(str::to_owned),
        }
    }

    /// Renders in this process.
    pub fn render_here(&self) -> Result<String, RenderError> {
        render_chat(
            &self.template,
            &ChatTemplateInput {
                messages: &self.messages,
                tools: self.tools.as_deref(),
                add_generation_prompt: self.add_generation_prompt,
                bos_token: self.bos_token.as_deref(),
                eos_token: self.eos_token.as_deref(),
                enable_thinking: self.enable_thinking,
                reasoning_effort: self.reasoning_effort.as_deref(),
            },
        )
    }
}

/// A worker's answer to one render.
#[derive(Debug, Serialize, Deserialize)]
enum WorkerReply {
    Rendered(String),
    Failed(String),
}

/// The worker's side: answers each request line of `input` on `output` until `input` ends.
pub fn serve_template_worker(input: impl BufRead, mut output: impl Write) -> io::Result<()> {
    for line in input.lines() {
        let reply = match serde_json::from_str::<OwnedRender>(&line?) {
            Ok(request) => match request.render_here() {
                Ok(text) => WorkerReply::Rendered(text),
                Err(error) => WorkerReply::Failed(error.0),
            },
            Err(error) => WorkerReply::Failed(format!("bad request to the template worker: {error}")),
        };
        serde_json::to_writer(&mut output, &reply)?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
    Ok(())
}

/// Worker processes made by a command, reused one render at a time.
pub struct TemplateWorkers {
    make_command: Box<dyn Fn() -> Command + Send + Sync>,
    /// How the limit reads in errors, e.g. `2.0 GiB`.
    limit_text: String,
    idle: Mutex<Vec<Worker>>,
}

impl std::fmt::Debug for TemplateWorkers {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("TemplateWorkers").field("limit", &self.limit_text).finish_non_exhaustive()
    }
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TemplateWorkers {
    /// Workers started by `make_command` (stdin and stdout are piped here); `limit_text` names
    /// their memory limit in errors.
    pub fn new(make_command: impl Fn() -> Command + Send + Sync + 'static, limit_text: String) -> TemplateWorkers {
        TemplateWorkers { make_command: Box::new(make_command), limit_text, idle: Mutex::new(Vec::new()) }
    }

    /// Renders in a worker. Blocks: call it from a blocking thread.
    pub fn render(&self, request: &OwnedRender) -> Result<String, RenderError> {
        let idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        let mut worker = match idle {
            Some(worker) => worker,
            None => self.spawn().map_err(|error| RenderError(format!("cannot start a template worker: {error}")))?,
        };
        match worker.exchange(request) {
            Ok(reply) => {
                let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if idle.len() < MAX_IDLE_WORKERS {
                    idle.push(worker);
                }
                match reply {
                    WorkerReply::Rendered(text) => Ok(text),
                    WorkerReply::Failed(message) => Err(RenderError(message)),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "a template worker died while rendering");
                Err(RenderError(format!(
                    "rendering used more than the template memory limit ({}, MODELD_TEMPLATE_MEMORY)",
                    self.limit_text
                )))
            }
        }
    }

    fn spawn(&self) -> io::Result<Worker> {
        let mut child = (self.make_command)().stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| io::Error::other("no stdin"))?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| io::Error::other("no stdout"))?);
        Ok(Worker { child, stdin, stdout })
    }
}

impl Worker {
    fn exchange(&mut self, request: &OwnedRender) -> io::Result<WorkerReply> {
        serde_json::to_writer(&mut self.stdin, request)?;
        self.stdin.write_all(b"\n")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the worker exited"));
        }
        serde_json::from_str(&line).map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_loop_answers_each_line() {
        let messages = [TemplateMessage { role: "user".into(), content: "Hi".into(), ..Default::default() }];
        let input = ChatTemplateInput { messages: &messages, add_generation_prompt: true, ..Default::default() };
        let good = OwnedRender::new("{{ messages[0].content }}!", &input);
        let bad = OwnedRender::new("{{ raise_exception('no') }}", &input);
        let mut requests = Vec::new();
        for request in [&good, &bad] {
            requests.extend(serde_json::to_vec(request).unwrap());
            requests.push(b'\n');
        }
        requests.extend(b"not json\n");
        let mut replies = Vec::new();
        serve_template_worker(&requests[..], &mut replies).unwrap();
        let replies: Vec<WorkerReply> =
            String::from_utf8(replies).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert!(matches!(&replies[0], WorkerReply::Rendered(text) if text == "Hi!"), "{replies:?}");
        assert!(matches!(&replies[1], WorkerReply::Failed(text) if text.contains("no")), "{replies:?}");
        assert!(matches!(&replies[2], WorkerReply::Failed(text) if text.contains("bad request")), "{replies:?}");
        assert_eq!(good.render_here().unwrap(), "Hi!");
    }

    #[test]
    fn messages_cross_the_pipe_unchanged() {
        let messages = [
            TemplateMessage { role: "user".into(), content: "Hi".into(), ..Default::default() },
            TemplateMessage {
                role: "assistant".into(),
                content_is_none: true,
                tool_calls: Some(vec![serde_json::json!({"type": "function", "function": {"name": "f"}})]),
                ..Default::default()
            },
            TemplateMessage {
                role: "tool".into(),
                content: "42".into(),
                name: Some("f".into()),
                tool_call_id: Some("call_1".into()),
                ..Default::default()
            },
        ];
        let input = ChatTemplateInput { messages: &messages, ..Default::default() };
        let request = OwnedRender::new("x", &input);
        let received: OwnedRender = serde_json::from_slice(&serde_json::to_vec(&request).unwrap()).unwrap();
        assert_eq!(received.messages, messages);
    }

    #[test]
    fn a_worker_that_dies_is_an_error_and_is_replaced() {
        // `sh -c 'read line; exit 1'` dies on its first request, like a worker out of memory.
        let dying = TemplateWorkers::new(
            || {
                let mut command = Command::new("sh");
                command.args(["-c", "read line; exit 1"]);
                command
            },
            "1 B".into(),
        );
        let request = OwnedRender { template: "x".into(), ..Default::default() };
        for _ in 0..3 {
            let error = dying.render(&request).unwrap_err();
            assert!(error.0.contains("template memory limit (1 B"), "{error}");
        }
    }
}
