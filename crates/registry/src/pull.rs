//! `pull`: a model's manifest and missing blobs from a registry into the store.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use model_store::{BlobDownload, Digest, Layer, Manifest, ModelName, Store};
use reqwest::header::{ACCEPT, CONTENT_RANGE, RANGE};
use reqwest::{Method, StatusCode};

use crate::client::{read_bounded, status_error, RegistryClient, RequestSpec, MAX_MANIFEST_BYTES};
use crate::{Error, Progress, ProgressSink, RegistryOptions};

/// The manifest types asked for: Ollama's (Docker v2) first, OCI's for registries that convert.
const MANIFEST_ACCEPT: &str =
    "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";
/// Parts are a sixteenth of the blob, between these sizes (as Ollama splits them).
const MIN_PART_BYTES: u64 = 100 << 20;
const MAX_PART_BYTES: u64 = 1000 << 20;
/// Parts downloaded at once.
const PARALLEL_PARTS: usize = 8;
/// How often progress is reported, and how often a download's state is saved for resuming.
const REPORT_EVERY: Duration = Duration::from_millis(100);
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// Also saved after this many new bytes: each save syncs what arrived, so the disk writes
/// while the network still sends and the final sync has little left to do.
const SAVE_EVERY_BYTES: u64 = 16 << 20;
/// Bytes gathered before each write to the partial file.
const WRITE_BYTES: usize = 1 << 20;
/// How often the loop looks at the counters.
const CHECK_EVERY: Duration = Duration::from_millis(10);
/// Tries of one part after a dropped connection, each resuming where the last stopped.
const PART_TRIES: usize = 3;

/// Pulls `name` from its registry into `store`, reporting progress as Ollama does.
pub async fn pull(
    store: &Store,
    name: &ModelName,
    options: RegistryOptions,
    progress: &dyn ProgressSink,
) -> Result<(), Error> {
    let client = RegistryClient::new(name, options, "pull")?;
    progress.report(Progress::status("pulling manifest"));
    let manifest_bytes = fetch_manifest(&client, &name.tag).await?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|error| Error::Protocol(format!("pull model manifest: invalid manifest: {error}")))?;

    let mut downloaded = Vec::new();
    for layer in manifest.blobs() {
        if let Some(download) = download_blob(&client, store, layer, options.part_bytes, progress).await? {
            downloaded.push(download);
        }
    }

    progress.report(Progress::status("verifying sha256 digest"));
    // Every download is finished (a blob that hashes right is kept, as Ollama keeps it, and
    // one that does not is deleted); the first failure is the pull's.
    let verify = tokio::task::spawn_blocking(move || {
        let mut first_failure = None;
        for download in downloaded {
            if let Err(error) = download.finish() {
                first_failure.get_or_insert(match error {
                    model_store::Error::DigestMismatch { expected, actual } => {
                        Error::DigestMismatch { expected, actual }
                    }
                    other => Error::Store(other),
                });
            }
        }
        first_failure.map_or(Ok(()), Err)
    });
    verify.await.map_err(|error| Error::Protocol(error.to_string()))??;

    progress.report(Progress::status("writing manifest"));
    let write = {
        let store = store.clone();
        let name = name.clone();
        let new_digests: BTreeSet<Digest> = manifest.all_digests().cloned().collect();
        // The manifest and the removal of what only the manifest it replaces used are one unit
        // under the store's write lock.
        tokio::task::spawn_blocking(move || {
            let guard = store.write_lock()?;
            let replaced = guard.put_bytes(&name, &manifest_bytes)?;
            let unused: Vec<Digest> = replaced
                .map(|old| old.all_digests().filter(|digest| !new_digests.contains(*digest)).cloned().collect())
                .unwrap_or_default();
            let removes_any = !unused.is_empty();
            if removes_any {
                guard.remove_unreferenced(unused)?;
            }
            Ok::<_, model_store::Error>(removes_any)
        })
    };
    if write.await.map_err(|error| Error::Protocol(error.to_string()))?? {
        progress.report(Progress::status("removing unused layers"));
    }
    progress.report(Progress::status("success"));
    Ok(())
}

async fn fetch_manifest(client: &RegistryClient, tag: &str) -> Result<Vec<u8>, Error> {
    let spec = RequestSpec::new(Method::GET, client.url(&format!("manifests/{tag}"))).header(ACCEPT, MANIFEST_ACCEPT);
    let response = client.send(&spec).await?;
    if response.status() == StatusCode::NOT_FOUND {
        return Err(Error::ManifestNotFound);
    }
    if !response.status().is_success() {
        return Err(status_error(response).await);
    }
    let announced = response
        .headers()
        .get("docker-content-digest")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| Digest::parse(value).ok());
    let bytes = read_bounded(response, MAX_MANIFEST_BYTES).await?;
    if let Some(announced) = announced {
        let actual = Digest::of_bytes(&bytes);
        if actual != announced {
            return Err(Error::Protocol(format!(
                "pull model manifest: digest mismatch, want {announced}, got {actual}"
            )));
        }
    }
    Ok(bytes)
}

/// Downloads one blob unless the store has it; the unverified download, to be finished once
/// every blob is in.
async fn download_blob(
    client: &RegistryClient,
    store: &Store,
    layer: &Layer,
    part_bytes: Option<u64>,
    progress: &dyn ProgressSink,
) -> Result<Option<BlobDownload>, Error> {
    let digest = layer.digest.clone();
    let size = layer.size;
    if store.has_blob(&digest) {
        progress.report(Progress::blob("pulling", &digest, size, size));
        return Ok(None);
    }
    let part_size = part_bytes.unwrap_or((size / 16).clamp(MIN_PART_BYTES, MAX_PART_BYTES));
    let begin = {
        let store = store.clone();
        let digest = digest.clone();
        tokio::task::spawn_blocking(move || store.begin_download(&digest, size, part_size))
    };
    let Some(mut download) = begin.await.map_err(|error| Error::Protocol(error.to_string()))?? else {
        // Another pull of the same blob finished it while this one waited.
        progress.report(Progress::blob("pulling", &digest, size, size));
        return Ok(None);
    };
    // What an interrupted pull already wrote counts from the start.
    progress.report(Progress::blob("pulling", &digest, size, download.completed()));

    let parts = download.parts().to_vec();
    let counters: Arc<Vec<AtomicU64>> = Arc::new(parts.iter().map(|part| AtomicU64::new(part.completed)).collect());
    let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL_PARTS));
    let url = client.url(&format!("blobs/{digest}"));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, part) in parts.iter().enumerate() {
        if part.remaining() > 0 {
            let job = PartJob {
                client: client.clone(),
                url: url.clone(),
                part: *part,
                counter: Arc::clone(&counters),
                index,
                blob_size: size,
                writer: download.writer(),
            };
            let limit = Arc::clone(&limit);
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                job.run().await
            });
        }
    }

    let total_done =
        |counters: &[AtomicU64]| counters.iter().map(|counter| counter.load(Ordering::Relaxed)).sum::<u64>();
    let mut check_tick = tokio::time::interval(CHECK_EVERY);
    let mut last_report = Instant::now();
    let mut last_saved = (Instant::now(), total_done(&counters));
    let mut failure = None;
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(error))) => {
                    failure.get_or_insert(error);
                    tasks.abort_all();
                }
                Some(Err(join_error)) if join_error.is_cancelled() => {}
                Some(Err(join_error)) => {
                    failure.get_or_insert(Error::Protocol(join_error.to_string()));
                    tasks.abort_all();
                }
            },
            _ = check_tick.tick() => {
                let done = total_done(&counters);
                if last_report.elapsed() >= REPORT_EVERY {
                    progress.report(Progress::blob("pulling", &digest, size, done));
                    last_report = Instant::now();
                }
                if last_saved.0.elapsed() >= SAVE_EVERY || done >= last_saved.1 + SAVE_EVERY_BYTES {
                    download = save_progress(download, &counters).await?;
                    last_saved = (Instant::now(), done);
                }
            }
        }
    }
    if let Some(error) = failure {
        if matches!(error, Error::Network(_)) {
            // A broken connection: keep what arrived, so the next pull resumes from there.
            let _ = save_progress(download, &counters).await;
        } else {
            // A full disk, or a registry that broke the protocol: nothing of this blob stays,
            // and the store is as it was.
            tokio::task::spawn_blocking(move || download.discard()).await.ok();
        }
        return Err(error);
    }
    progress.report(Progress::blob("pulling", &digest, size, size));
    Ok(Some(download))
}

/// Saves how far each part got. A save that fails (a full disk) discards the download: without
/// its state the data cannot be resumed, and the store is left as it was.
async fn save_progress(mut download: BlobDownload, counters: &Arc<Vec<AtomicU64>>) -> Result<BlobDownload, Error> {
    let completed: Vec<u64> = counters.iter().map(|counter| counter.load(Ordering::Relaxed)).collect();
    let saved = tokio::task::spawn_blocking(move || match download.save_progress(&completed) {
        Ok(()) => Ok(download),
        Err(error) => {
            download.discard();
            Err(error)
        }
    });
    Ok(saved.await.map_err(|error| Error::Protocol(error.to_string()))??)
}

/// One part of a blob to fetch with `Range`, resuming after a dropped connection.
struct PartJob {
    client: RegistryClient,
    url: reqwest::Url,
    part: model_store::DownloadPart,
    counter: Arc<Vec<AtomicU64>>,
    index: usize,
    blob_size: u64,
    writer: model_store::PartWriter,
}

impl PartJob {
    async fn run(self) -> Result<(), Error> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.fetch().await {
                Ok(()) => return Ok(()),
                Err(Error::Network(text)) if tries < PART_TRIES => {
                    tracing::debug!(url = %self.url, "part download interrupted, resuming: {text}");
                    tokio::time::sleep(Duration::from_millis(500 * tries as u64)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Fetches what is missing of the part, writing it at its offset and counting it.
    async fn fetch(&self) -> Result<(), Error> {
        let counter = &self.counter[self.index];
        let done = counter.load(Ordering::Relaxed);
        let part_length = self.part.end - self.part.start;
        if done >= part_length {
            return Ok(());
        }
        let first = self.part.start + done;
        let last = self.part.end - 1;
        let spec = RequestSpec::new(Method::GET, self.url.clone()).header(RANGE, &format!("bytes={first}-{last}"));
        let mut response = self.client.send(&spec).await?;
        let status = response.status();
        let whole_blob = status == StatusCode::OK && first == 0 && self.part.end == self.blob_size;
        if status == StatusCode::NOT_FOUND {
            return Err(Error::Registry(format!("blob {} not found in the registry", self.url)));
        }
        if status != StatusCode::PARTIAL_CONTENT && !whole_blob {
            if status.is_success() {
                return Err(Error::Protocol(format!("the registry ignored the range request for {}", self.url)));
            }
            return Err(status_error(response).await);
        }
        if status == StatusCode::PARTIAL_CONTENT {
            let range_start = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("bytes "))
                .and_then(|value| value.split('-').next())
                .and_then(|value| value.trim().parse::<u64>().ok());
            if range_start != Some(first) {
                return Err(Error::Protocol(format!("the registry sent another range than asked for {}", self.url)));
            }
        }
        // The network hands over chunks of a few KiB; they are written a MiB at a time.
        let mut offset = first;
        let mut pending = Vec::with_capacity(WRITE_BYTES);
        loop {
            let chunk = match response.chunk().await {
                Ok(chunk) => chunk,
                Err(error) => {
                    // Keep what arrived before the connection broke.
                    self.write_pending(&mut offset, &mut pending)?;
                    return Err(error.into());
                }
            };
            let Some(chunk) = chunk else { break };
            if offset + (pending.len() + chunk.len()) as u64 > self.part.end {
                return Err(Error::Protocol(format!("the registry sent more bytes than the blob has: {}", self.url)));
            }
            pending.extend_from_slice(&chunk);
            if pending.len() >= WRITE_BYTES {
                self.write_pending(&mut offset, &mut pending)?;
            }
        }
        self.write_pending(&mut offset, &mut pending)?;
        if offset != self.part.end {
            return Err(Error::Network(format!(
                "connection closed after {} of {} bytes",
                offset - self.part.start,
                part_length
            )));
        }
        Ok(())
    }

    fn write_pending(&self, offset: &mut u64, pending: &mut Vec<u8>) -> Result<(), Error> {
        if !pending.is_empty() {
            self.writer.write_at(*offset, pending)?;
            *offset += pending.len() as u64;
            self.counter[self.index].store(*offset - self.part.start, Ordering::Relaxed);
            pending.clear();
        }
        Ok(())
    }
}
