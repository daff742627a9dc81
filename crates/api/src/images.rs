//! `/v1/images`: the disk images VMs are made from. An image is stored
//! once per host and copied into each VM made from it: root file systems
//! built by `lockstep image build` (in the image cache) and images users
//! upload (`HOME/images/NAME.FORMAT`, with `NAME.json` recording format,
//! size, SHA-256 and uploader). The boot image (kernel, initramfs,
//! firmware) that every VM boots is listed too.

use crate::daemon::{blocking, Daemon};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::identity::Caller;
use crate::routes::{P, Q};
use axum::extract::State;
use axum::http::StatusCode;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// An image VMs can be made from, or the boot image.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageDoc {
    pub name: String,
    /// `boot` (kernel, initramfs, firmware), `rootfs` (built from
    /// Debian's packages) or `upload`.
    pub kind: String,
    /// `qcow2` or `raw` (none for the boot image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Virtual size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// SHA-256 of the image file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The project that uploaded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ImageList {
    pub images: Vec<ImageDoc>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadMeta {
    name: String,
    format: disk::Format,
    size: u64,
    sha256: String,
    project: String,
    created: u64,
}

const MAX_META_BYTES: u64 = 64 << 10;

fn uploads(d: &Daemon) -> Vec<(UploadMeta, PathBuf)> {
    let dir = d.images_dir();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let small = e.metadata().is_ok_and(|m| m.len() <= MAX_META_BYTES);
        let Some(meta) = small
            .then(|| std::fs::read(&path).ok())
            .flatten()
            .and_then(|b| serde_json::from_slice::<UploadMeta>(&b).ok())
        else {
            continue;
        };
        let file = dir.join(format!("{}.{}", meta.name, meta.format));
        if file.is_file() {
            out.push((meta, file));
        }
    }
    out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    out
}

fn suite() -> String {
    guest_image::PullOptions::default().suite
}

/// Every image of this host.
pub fn list(d: &Daemon) -> ApiResult<Vec<ImageDoc>> {
    let mut images = Vec::new();
    if let Ok(boot) = guest_image::list(None) {
        for (name, _) in boot {
            images.push(ImageDoc {
                name,
                kind: "boot".into(),
                format: None,
                size: None,
                sha256: None,
                project: None,
            });
        }
    }
    if let Ok(roots) = guest_image::rootfs::list(None, &suite()) {
        for r in roots {
            images.push(ImageDoc {
                name: r.name,
                kind: "rootfs".into(),
                format: Some("qcow2".into()),
                size: Some(r.disk_size),
                sha256: Some(r.sha256),
                project: None,
            });
        }
    }
    for (m, _) in uploads(d) {
        images.push(ImageDoc {
            name: m.name,
            kind: "upload".into(),
            format: Some(m.format.to_string()),
            size: Some(m.size),
            sha256: Some(m.sha256),
            project: Some(m.project),
        });
    }
    Ok(images)
}

/// The file and format of the disk image `name`.
pub fn resolve(d: &Daemon, name: &str) -> ApiResult<(PathBuf, disk::Format)> {
    if let Some((m, path)) = uploads(d).into_iter().find(|(m, _)| m.name == name) {
        return Ok((path, m.format));
    }
    if let Ok(roots) = guest_image::rootfs::list(None, &suite()) {
        if let Some(r) = roots.into_iter().find(|r| r.name == name) {
            return Ok((r.path, disk::Format::Qcow2));
        }
    }
    Err(ApiError::BadRequest(format!(
        "no image named {:?} on host {} (GET /v1/images lists them; `lockstep image build debian` makes debian-minbase)",
        name.chars().take(80).collect::<String>(),
        d.config.host_name
    )))
}

/// The host's images.
#[utoipa::path(get, path = "/v1/images", tag = "images",
    responses((status = 200, body = ImageList), (status = 401, body = ErrorBody)))]
async fn list_images(
    State(d): State<Arc<Daemon>>,
    _caller: Caller,
) -> ApiResult<axum::Json<ImageList>> {
    let images = blocking(move || list(&d)).await?;
    Ok(axum::Json(ImageList { images }))
}

#[derive(Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadParams {
    /// `qcow2` or `raw`: what the body is (checked; never guessed).
    pub format: String,
    /// The body's SHA-256 (hex), checked when given.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// Upload a disk image (the request body, up to the daemon's `--max-image-size`).
/// A qcow2 image may not name a backing file.
#[utoipa::path(put, path = "/v1/images/{name}", tag = "images", params(("name" = String, Path), UploadParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = ImageDoc), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn upload_image(
    State(d): State<Arc<Daemon>>,
    caller: Caller,
    P(name): P<String>,
    Q(q): Q<UploadParams>,
    body: axum::body::Body,
) -> ApiResult<(StatusCode, axum::Json<ImageDoc>)> {
    caller.may_change()?;
    vmm::check_name("image name", &name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let format: disk::Format = q
        .format
        .parse()
        .map_err(|e: disk::UnknownFormat| ApiError::BadRequest(format!("format: {e}")))?;
    if let Some(h) = &q.sha256 {
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::BadRequest("sha256: 64 hex digits".into()));
        }
    }
    let dir = d.images_dir();
    let meta_path = dir.join(format!("{name}.json"));
    let _busy = d.busy("images", &name, "the upload")?;
    if meta_path.exists() || uploads(&d).iter().any(|(m, _)| m.name == name) {
        return Err(ApiError::Conflict(format!(
            "an image named {name:?} exists already"
        )));
    }
    let (tmp, sha256) = receive(&d, ".upload-", body.into_data_stream(), |e| {
        ApiError::BadRequest(format!("reading the upload: {e}"))
    })
    .await?;
    if let Some(want) = &q.sha256 {
        if !want.eq_ignore_ascii_case(&sha256) {
            return Err(ApiError::BadRequest(format!(
                "sha256: the upload's is {sha256}, not {want}; nothing was kept"
            )));
        }
    }
    let d2 = d.clone();
    let project = caller.project.clone();
    let doc = blocking(move || keep(&d2, tmp, &name, format, sha256, &project, "")).await?;
    Ok((StatusCode::CREATED, axum::Json(doc)))
}

/// Write `stream` to a new file in the images directory (fsynced; removed
/// unless kept), refusing more than the daemon's `--max-image-size`: the
/// file and its SHA-256 (hex). `bad` names a failed read.
async fn receive<E>(
    d: &Daemon,
    prefix: &str,
    stream: impl futures_util::Stream<Item = Result<axum::body::Bytes, E>>,
    bad: impl Fn(E) -> ApiError,
) -> ApiResult<(tempfile::TempPath, String)> {
    let dir = d.images_dir();
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in(&dir)
        .map_err(|e| ApiError::Internal(format!("{}: {e}", dir.display())))?
        .into_temp_path();
    let mut file = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| ApiError::Internal(format!("{}: {e}", tmp.display())))?;
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let limit = d.config.max_image_bytes;
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(&bad)?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(ApiError::TooLarge { limit });
        }
        hash.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::Internal(format!("{}: {e}", tmp.display())))?;
    }
    file.sync_all()
        .await
        .map_err(|e| ApiError::Internal(format!("{}: {e}", tmp.display())))?;
    drop(file);
    let sha256 = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((tmp, sha256))
}

/// Check the image in `tmp` (its format, no backing file) and keep it as
/// image `name` with its metadata.
fn keep(
    d: &Daemon,
    tmp: tempfile::TempPath,
    name: &str,
    format: disk::Format,
    sha256: String,
    project: &str,
    origin: &str,
) -> ApiResult<ImageDoc> {
    let dir = d.images_dir();
    let target = dir.join(format!("{name}.{format}"));
    let meta_path = dir.join(format!("{name}.json"));
    let size = std::fs::metadata(&tmp)
        .map_err(|e| ApiError::Internal(format!("{}: {e}", tmp.display())))?
        .len();
    let info = disk::info(&tmp)
        .map_err(|e| ApiError::BadRequest(format!("the upload is not a usable disk image: {e}")))?;
    if info.format != format {
        return Err(ApiError::BadRequest(format!(
            "the upload is a {} image, not {format}",
            info.format
        )));
    }
    if !info.backing_chain.is_empty() {
        return Err(ApiError::BadRequest(
            "the upload names a backing file; upload a flattened image (`qemu-img convert`)".into(),
        ));
    }
    tmp.persist_noclobber(&target)
        .map_err(|e| ApiError::Conflict(format!("{}: {}", target.display(), e.error)))?;
    let meta = UploadMeta {
        name: name.to_string(),
        format,
        size: info.virtual_size,
        sha256: sha256.clone(),
        project: project.to_string(),
        created: vmm::now(),
    };
    let bytes = serde_json::to_vec_pretty(&meta).map_err(|e| ApiError::Internal(e.to_string()))?;
    crate::identity::write_private(&meta_path, &bytes)?;
    d.event(
        project,
        "image",
        name,
        "created",
        format!("{size} bytes{origin}"),
    );
    Ok(ImageDoc {
        name: name.to_string(),
        kind: "upload".into(),
        format: Some(format.to_string()),
        size: Some(info.virtual_size),
        sha256: Some(sha256),
        project: Some(project.to_string()),
    })
}

/// An image's bytes (qcow2 or raw, as `GET /v1/images` says), for another
/// host of the cluster to copy.
#[utoipa::path(get, path = "/v1/images/{name}/content", tag = "images", params(("name" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn image_content(
    State(d): State<Arc<Daemon>>,
    caller: Caller,
    P(name): P<String>,
) -> ApiResult<axum::response::Response> {
    let d2 = d.clone();
    let n = name.clone();
    let found = blocking(move || Ok(resolve(&d2, &n).ok())).await?;
    let (path, _) = found.ok_or_else(|| ApiError::not_found("image", &name, &caller.project))?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::Internal(format!("{}: {e}", path.display())))?;
    let stream = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 20];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let mut response = axum::response::Response::new(axum::body::Body::from_stream(stream));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

/// Make sure image `name` is on this host: in a cluster, copy it from a
/// host that has it (checking its SHA-256) when this one does not.
pub async fn ensure(d: &Arc<Daemon>, caller: &Caller, name: &str) -> ApiResult<()> {
    let d2 = d.clone();
    let n = name.to_string();
    let missing = match blocking(move || resolve(&d2, &n)).await {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    #[cfg(feature = "etcd")]
    if let Some(cluster) = d.cluster() {
        return copy_from_peer(d, &cluster, caller, name, missing).await;
    }
    let _ = caller;
    Err(missing)
}

#[cfg(feature = "etcd")]
async fn copy_from_peer(
    d: &Arc<Daemon>,
    cluster: &crate::cluster::Cluster,
    caller: &Caller,
    name: &str,
    missing: ApiError,
) -> ApiResult<()> {
    let hosts = cluster.hosts().await?;
    let Some(peer) = hosts
        .iter()
        .find(|h| h.name != cluster.host && h.images.iter().any(|i| i == name))
    else {
        return Err(missing);
    };
    let _busy = d.busy("images", name, "the copy")?;
    // The daemon acts for its caller, with a token that lasts a minute.
    let token = d.identity.mint(caller, 60)?;
    let list: ImageList = cluster.get_json(peer, "/v1/images", &token).await?;
    let doc = list
        .images
        .into_iter()
        .find(|i| i.name == name && i.kind != "boot")
        .ok_or_else(|| {
            ApiError::Unavailable(format!("host {} no longer has image {name:?}", peer.name))
        })?;
    let format: disk::Format =
        doc.format
            .as_deref()
            .unwrap_or("")
            .parse()
            .map_err(|e: disk::UnknownFormat| {
                ApiError::Internal(format!("host {}: image {name:?}: {e}", peer.name))
            })?;
    let want = doc.sha256.clone().unwrap_or_default();
    tracing::info!("copying image {name:?} from host {}", peer.name);
    let answer = cluster
        .get_stream(peer, &format!("/v1/images/{name}/content"), &token)
        .await?;
    let from = peer.name.clone();
    let (tmp, sha256) = receive(d, ".copy-", answer.bytes_stream(), |e| {
        ApiError::Unavailable(format!("copying image {name:?} from host {from}: {e}"))
    })
    .await?;
    if !want.eq_ignore_ascii_case(&sha256) {
        return Err(ApiError::Unavailable(format!(
            "image {name:?} copied from host {} has SHA-256 {sha256}, not {want} as that host says; nothing was kept",
            peer.name
        )));
    }
    let project = doc.project.unwrap_or_else(|| caller.project.clone());
    let d2 = d.clone();
    let n = name.to_string();
    let from = peer.name.clone();
    blocking(move || {
        keep(
            &d2,
            tmp,
            &n,
            format,
            sha256,
            &project,
            &format!(", copied from host {from}"),
        )
        .map(|_| ())
    })
    .await
}

/// Delete an uploaded image (its project's members, or an admin).
#[utoipa::path(delete, path = "/v1/images/{name}", tag = "images", params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_image(
    State(d): State<Arc<Daemon>>,
    caller: Caller,
    P(name): P<String>,
) -> ApiResult<StatusCode> {
    caller.may_change()?;
    let _busy = d.busy("images", &name, "the deletion")?;
    blocking(move || {
        let (m, path) = uploads(&d)
            .into_iter()
            .find(|(m, _)| m.name == name)
            .ok_or_else(|| ApiError::not_found("uploaded image", &name, &caller.project))?;
        if m.project != caller.project && caller.must_be_admin().is_err() {
            return Err(ApiError::Forbidden(format!(
                "image {name:?} belongs to project {:?}",
                m.project
            )));
        }
        let meta = d.images_dir().join(format!("{name}.json"));
        std::fs::remove_file(&meta)
            .map_err(|e| ApiError::Internal(format!("{}: {e}", meta.display())))?;
        let _ = std::fs::remove_file(&path);
        d.event(&caller.project, "image", &name, "deleted", String::new());
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn routes() -> OpenApiRouter<Arc<Daemon>> {
    OpenApiRouter::new()
        .routes(routes!(list_images))
        .routes(routes!(upload_image, delete_image))
        .routes(routes!(image_content))
}
