//! `docker-archive:FILE[:REF]`: what `docker load` and `podman load` read. Layers are stored
//! uncompressed (as `docker save` writes them) under their diff_id, which every docker and
//! podman version loads; the config is the same bytes as in the OCI image.

use super::oci_layout::{CountingWriter, add_bytes, add_dir, header};
use super::{Output, Written};
use crate::blobs::BlobStore;
use crate::image::{BlobKind, Image, PlatformImage};
use crate::layers::Layer;
use crate::platform::Platform;
use crate::util::atomic;
use crate::util::shell::Shell;
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::io::Read;
use std::io::Write;
use std::path::PathBuf;

pub struct DockerArchive {
    pub path: PathBuf,
    /// Normalized references with tags, e.g. `hello:1.0.0`; the first names the output.
    pub references: Vec<String>,
    /// Which platform of a multi-platform image to write.
    pub platform: Option<Platform>,
}

/// `docker-archive:FILE[:REF]`: what `docker load` reads; REF defaults to `<bin>:<version>`
/// made valid ([`super::Defaults::docker_reference`]).
pub const KIND: super::Kind = super::Kind {
    transport: "docker-archive",
    syntax: "docker-archive:FILE[:REF]",
    make: |path, reference, defaults| {
        let reference = normalize_ref(
            reference
                .map(String::from)
                .unwrap_or_else(|| defaults.docker_reference()),
        )?;
        Ok(Box::new(DockerArchive {
            path,
            references: vec![reference],
            platform: defaults.platform,
        }))
    },
};

/// Checks a docker reference (`[host[:port]/]name[:tag]`) and adds `:latest` when no tag is given.
pub fn normalize_ref(r: String) -> Result<String> {
    let parsed = crate::util::reference::Reference::parse(&r)?;
    if parsed.digest.is_some() {
        bail!(
            "image reference `{r}` names a digest; a local image needs NAME[:TAG], e.g. myapp:1.0.0"
        );
    }
    Ok(match parsed.tag {
        Some(_) => r,
        None => format!("{r}:latest"),
    })
}

/// The uncompressed tar of `layer`, read through [`BlobStore::open_proven`] (an output never
/// reads a blob not proven to match its digest).
fn decompressed(store: &BlobStore, layer: &Layer) -> Result<Box<dyn Read>> {
    let media_type = layer.media_type.as_ref();
    let f = super::oci_layout::Exact {
        inner: store
            .open_proven(&layer.digest, layer.size)?
            .take(layer.size),
        left: layer.size,
        digest: layer.digest.clone(),
    };
    let f = std::io::BufReader::with_capacity(1 << 20, f);
    // OCI's `+gzip`/`+zstd` and Docker schema 2's `.tar.gzip` (a base image's layers).
    Ok(if media_type.ends_with("zstd") {
        Box::new(zstd::Decoder::with_buffer(f)?)
    } else if media_type.ends_with("gzip") {
        Box::new(flate2::bufread::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    })
}

/// The one platform image a docker archive can hold.
pub fn pick_platform(image: &Image, platform: Option<Platform>) -> Result<&PlatformImage> {
    match (image.platforms.as_slice(), platform) {
        ([one], None) => Ok(one),
        (all, Some(p)) => all.iter().find(|i| i.platform == p).with_context(|| {
            format!(
                "--load-platform {p} is not in this image; it has {}",
                all.iter()
                    .map(|i| i.platform.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }),
        (all, None) => bail!(
            "a docker archive (and --load) holds one platform but this image has {}; choose one with --load-platform",
            all.iter()
                .map(|i| i.platform.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Says (at -v) that the image's referrers stay out of `what`, whose format has no place for
/// them, and where they do go.
pub fn note_referrers_left_out(image: &Image, what: &str, shell: &Shell) {
    let n = image.attachments.len();
    if n > 0 {
        shell.verbose(
            "Note",
            format!(
                "{n} referrer{} (provenance, SBOMs) left out of {what}: the format has no place for them; write oci: or oci-archive:, or --push, to keep them",
                if n == 1 { "" } else { "s" }
            ),
        );
    }
}

/// Writes the archive for `img` to `w`: what `docker load` and `podman load` read.
pub fn write_tar<W: Write>(
    w: W,
    img: &PlatformImage,
    store: &BlobStore,
    references: &[String],
) -> Result<u64> {
    // One platform's config and layers, from the one list of an image's blobs. The format has
    // no place for attachments (referrers): they stay out of docker archives and --load.
    let layers: Vec<&Layer> = img
        .blobs()
        .filter_map(|b| match b.kind {
            BlobKind::Layer(l) => Some(l),
            _ => None,
        })
        .collect();
    let cfg_name = format!("blobs/sha256/{}", img.config.digest.hex());
    let layer_names: Vec<String> = layers
        .iter()
        .map(|l| format!("blobs/sha256/{}", l.diff_id.hex()))
        .collect();
    let manifest = json!([{
        "Config": cfg_name,
        "RepoTags": references,
        "Layers": layer_names,
    }]);
    // `repositories` (the pre-1.10 index) maps each tag to the top layer's id.
    let top = layers
        .last()
        .map(|l| l.diff_id.hex().to_string())
        .unwrap_or_default();
    let mut repositories = serde_json::Map::new();
    for r in references {
        let (repo, tag) = r.rsplit_once(':').context("references carry a tag")?;
        let entry = repositories
            .entry(repo.to_string())
            .or_insert_with(|| json!({}));
        entry[tag] = json!(top);
    }
    let mut out = CountingWriter { inner: w, n: 0 };
    {
        let mut t = tar::Builder::new(&mut out);
        add_dir(&mut t, "blobs/")?;
        add_dir(&mut t, "blobs/sha256/")?;
        add_bytes(&mut t, &cfg_name, &img.config.bytes)?;
        let mut seen = std::collections::BTreeSet::new();
        for (layer, name) in layers.iter().zip(&layer_names) {
            if !seen.insert(name) {
                continue;
            }
            let mut h = header(tar::EntryType::Regular, 0o644, layer.tar_size);
            let r = decompressed(store, layer)?;
            t.append_data(&mut h, name, r)
                .with_context(|| format!("writing layer {} ({})", layer.digest, layer.what))?;
        }
        add_bytes(&mut t, "manifest.json", &serde_json::to_vec(&manifest)?)?;
        add_bytes(&mut t, "repositories", &serde_json::to_vec(&repositories)?)?;
        t.finish()?;
    }
    out.flush()?;
    Ok(out.n)
}

impl Output for DockerArchive {
    fn describe(&self) -> String {
        format!(
            "docker-archive:{}:{}",
            self.path.display(),
            self.references[0]
        )
    }

    fn preflight(&self) -> Result<()> {
        atomic::check_writable(&self.path, false, &self.describe())
    }

    fn destination(&self) -> Option<super::Destination> {
        Some(super::Destination {
            path: self.path.clone(),
            tag: None,
        })
    }

    fn single_platform(&self) -> bool {
        true
    }

    fn write(&self, image: &Image, store: &BlobStore, shell: &Shell) -> Result<Written> {
        let img = pick_platform(image, self.platform)?;
        note_referrers_left_out(image, "docker archives", shell);
        let mut total = 0;
        atomic::write_file(&self.path, |w| {
            total = write_tar(w, img, store, &self.references)?;
            Ok(())
        })?;
        let abs = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        Ok(Written {
            output: format!("docker-archive:{}:{}", abs.display(), self.references[0]),
            bytes: total,
            ..Written::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_ref;

    #[test]
    fn references() {
        assert_eq!(normalize_ref("app".into()).unwrap(), "app:latest");
        assert_eq!(
            normalize_ref("localhost:5000/a/b:1.2".into()).unwrap(),
            "localhost:5000/a/b:1.2"
        );
        assert!(normalize_ref("App:1".into()).is_err());
        assert!(normalize_ref("app:".into()).is_err());
        assert!(normalize_ref("a//b".into()).is_err());
    }
}
