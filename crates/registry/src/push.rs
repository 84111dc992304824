//! `push`: a model's missing blobs and its manifest from the store to a registry.

use std::io::{Read, Seek, SeekFrom};

use model_store::{media_type, Layer, ModelName, Store};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};

use crate::client::{status_error, RegistryClient, RequestSpec};
use crate::{Error, Progress, ProgressSink, RegistryOptions};

/// Blobs up to this size go in one `PUT`; larger ones in `PATCH` chunks of this size.
const CHUNK_BYTES: u64 = 32 << 20;

/// Pushes `name` from `store` to its registry, reporting progress as Ollama does.
pub async fn push(
    store: &Store,
    name: &ModelName,
    options: RegistryOptions,
    progress: &dyn ProgressSink,
) -> Result<(), Error> {
    progress.report(Progress::status("retrieving manifest"));
    let (manifest_bytes, manifest) = store.get_bytes(name).map_err(|error| match error {
        model_store::Error::ModelNotFound(_) => Error::ModelNotFound(name.display_shortest()),
        other => Error::Store(other),
    })?;
    let client = RegistryClient::new(name, options, "push,pull")?;
    for layer in manifest.blobs() {
        push_blob(&client, store, name, layer, progress).await?;
    }
    progress.report(Progress::status("pushing manifest"));
    let content_type = if manifest.media_type.is_empty() { media_type::MANIFEST } else { &manifest.media_type };
    let spec = RequestSpec::new(Method::PUT, client.url(&format!("manifests/{}", name.tag)))
        .header(CONTENT_TYPE, content_type)
        .body(manifest_bytes.into());
    let response = client.send(&spec).await?;
    if !response.status().is_success() {
        return Err(status_error(response).await);
    }
    progress.report(Progress::status("success"));
    Ok(())
}

async fn push_blob(
    client: &RegistryClient,
    store: &Store,
    name: &ModelName,
    layer: &Layer,
    progress: &dyn ProgressSink,
) -> Result<(), Error> {
    let digest = &layer.digest;
    let size = layer.size;
    let blob_url = client.url(&format!("blobs/{digest}"));
    let response = client.send(&RequestSpec::new(Method::HEAD, blob_url)).await?;
    match response.status() {
        status if status.is_success() => {
            progress.report(Progress::blob("pushing", digest, size, size));
            return Ok(());
        }
        StatusCode::NOT_FOUND => {}
        _ => return Err(status_error(response).await),
    }
    progress.report(Progress::blob("pushing", digest, size, 0));

    let mut uploads = client.url("blobs/uploads/");
    if let Some(source) = mount_source(name, layer) {
        uploads.query_pairs_mut().append_pair("mount", &digest.to_string()).append_pair("from", &source);
    }
    let response = client.send(&RequestSpec::new(Method::POST, uploads).header(CONTENT_LENGTH, "0")).await?;
    if response.status() == StatusCode::CREATED {
        // Mounted from the layer's source repository: nothing to send.
        progress.report(Progress::blob("pushing", digest, size, size));
        return Ok(());
    }
    if response.status() != StatusCode::ACCEPTED {
        return Err(status_error(response).await);
    }
    let mut location = upload_location(client, &response)?;
    let path = store.blob_path(digest);

    if size <= CHUNK_BYTES {
        let body = read_range(&path, 0, size).await?;
        let mut url = location;
        url.query_pairs_mut().append_pair("digest", &digest.to_string());
        let spec = RequestSpec::new(Method::PUT, url).header(CONTENT_TYPE, "application/octet-stream").body(body);
        finish_upload(client.send(&spec).await?).await?;
        progress.report(Progress::blob("pushing", digest, size, size));
        return Ok(());
    }
    let mut offset = 0;
    while offset < size {
        let length = CHUNK_BYTES.min(size - offset);
        let body = read_range(&path, offset, length).await?;
        let spec = RequestSpec::new(Method::PATCH, location.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_RANGE, &format!("{offset}-{}", offset + length - 1))
            .body(body);
        let response = client.send(&spec).await?;
        if response.status() != StatusCode::ACCEPTED && response.status() != StatusCode::NO_CONTENT {
            return Err(status_error(response).await);
        }
        location = upload_location(client, &response).unwrap_or(location);
        offset += length;
        progress.report(Progress::blob("pushing", digest, size, offset));
    }
    location.query_pairs_mut().append_pair("digest", &digest.to_string());
    let spec = RequestSpec::new(Method::PUT, location).header(CONTENT_LENGTH, "0");
    finish_upload(client.send(&spec).await?).await
}

/// The repository a layer can be mounted from: the model it was reused from, when that model
/// lives on the same registry in another repository.
fn mount_source(name: &ModelName, layer: &Layer) -> Option<String> {
    let from = ModelName::parse(layer.from.as_deref()?).ok()?;
    let same_registry = from.host.eq_ignore_ascii_case(&name.host);
    let same_repository =
        from.namespace.eq_ignore_ascii_case(&name.namespace) && from.model.eq_ignore_ascii_case(&name.model);
    (same_registry && !same_repository).then(|| format!("{}/{}", from.namespace, from.model))
}

fn upload_location(client: &RegistryClient, response: &reqwest::Response) -> Result<Url, Error> {
    let location = ["docker-upload-location", LOCATION.as_str()]
        .into_iter()
        .find_map(|header| response.headers().get(header)?.to_str().ok())
        .ok_or_else(|| Error::Protocol("the registry gave no upload location".into()))?;
    client.resolve(location)
}

async fn finish_upload(response: reqwest::Response) -> Result<(), Error> {
    if response.status().is_success() {
        Ok(())
    } else {
        Err(status_error(response).await)
    }
}

/// `length` bytes of the blob file from `offset`.
async fn read_range(path: &std::path::Path, offset: u64, length: u64) -> Result<bytes::Bytes, Error> {
    let path = path.to_owned();
    let read = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut buffer = Vec::with_capacity(length as usize);
        file.take(length).read_to_end(&mut buffer)?;
        if buffer.len() as u64 != length {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "blob shorter than its manifest says"));
        }
        Ok(bytes::Bytes::from(buffer))
    });
    read.await
        .map_err(|error| Error::Protocol(error.to_string()))?
        .map_err(|source| Error::Store(model_store::Error::Io { context: "reading blob to push".into(), source }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use model_store::Digest;

    fn layer_from(from: Option<&str>) -> Layer {
        Layer {
            media_type: media_type::MODEL.into(),
            digest: Digest::of_bytes(b"x"),
            size: 1,
            from: from.map(str::to_owned),
        }
    }

    #[test]
    fn layers_mount_only_from_another_repository_of_the_same_registry() {
        let name = ModelName::parse("registry.example:5000/team/tiny:v2").unwrap();
        let cases = [
            (Some("registry.example:5000/team/base:latest"), Some("team/base")),
            (Some("REGISTRY.example:5000/other/base"), Some("other/base")),
            (Some("registry.example:5000/team/tiny:v1"), None),
            (Some("smollm2"), None),
            (Some("not a name!"), None),
            (None, None),
        ];
        for (from, expected) in cases {
            assert_eq!(mount_source(&name, &layer_from(from)).as_deref(), expected, "{from:?}");
        }
    }
}
