//! The pipeline, stage by stage: metadata (and the base image, `image::base`, resolved
//! before any build) → build → verify → layers → image → attest → outputs.

use crate::attest::{self, Attached, AttestOptions, BinaryFact};
use crate::blobs::BlobStore;
use crate::build::{self, BuildOptions};
use crate::image::{self, Image};
use crate::layers::{self, Layer, SharedInputs};
use crate::machine_message::Report;
use crate::metadata::{self, CargoArgs, ImageSpec, Settings, git};
use crate::outputs::load::{Load, LoadEngine};
use crate::outputs::oci_layout::OciLayout;
use crate::outputs::registry::RegistryOutput;
use crate::outputs::{self, Defaults, Output, OutputSpec, Written};
use crate::platform::Platform;
use crate::registry::RegistryOptions;
use crate::util::shell::Shell;
use crate::verify;
use anyhow::{Result, bail};
use std::path::PathBuf;

/// Everything `cargo containerize build` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    pub cargo: CargoArgs,
    /// Settings from the command line, laid over Cargo.toml's.
    pub overrides: Settings,
    pub outputs: Vec<OutputSpec>,
    pub binary: Option<PathBuf>,
    pub install_target: bool,
    /// `-t` references (placeholders allowed).
    pub tags: Vec<String>,
    pub push: bool,
    /// `--load`, and into which engine.
    pub load: Option<LoadEngine>,
    /// The platform docker archives and --load take from a multi-platform image.
    pub load_platform: Option<Platform>,
    pub registry: RegistryOptions,
    /// `--sbom-dir`: also write the SBOMs there.
    pub sbom_dir: Option<PathBuf>,
    /// `--debug`: also write the image on `debug-from`, tagged `<tag>-debug`.
    pub debug: bool,
}

/// A run that failed after an output wrote part of what it was asked: the report of what is
/// written (its `error` set), for `--message-format json`. Prints as the error alone.
#[derive(Debug, thiserror::Error)]
#[error("{error:#}")]
pub struct Incomplete {
    pub report: Box<Report>,
    pub error: anyhow::Error,
}

/// What the debug variant's tags end with.
pub const DEBUG_SUFFIX: &str = "-debug";

/// Every output this run writes, checked before any build work; with a `suffix`, the same
/// outputs for a variant of the image (each tag with the suffix).
fn plan_outputs(
    req: &BuildRequest,
    spec: &ImageSpec,
    target_dir: &std::path::Path,
    suffix: &str,
    signing_key: Option<&std::sync::Arc<crate::sign::key::SigningKey>>,
    shell: &Shell,
) -> Result<Vec<Box<dyn Output>>> {
    let defaults = Defaults {
        tag: format!("{}{suffix}", spec.build.version),
        name: spec.build.bin.clone(),
        platform: req.load_platform,
        layout_referrers: spec.publish.layout_referrers,
    };
    let mut list: Vec<Box<dyn Output>> = Vec::new();
    for o in &req.outputs {
        list.push(o.variant(suffix).make(&defaults)?);
    }
    if req.outputs.is_empty() && !req.push && req.load.is_none() {
        // Built directly, not parsed: the target directory's path may hold a `:`.
        list.push(Box::new(OciLayout {
            path: target_dir.join("containerize").join(&spec.build.bin),
            tag: defaults.tag.clone(),
            archive: false,
            referrers: spec.publish.layout_referrers,
        }));
    }
    if let Some(engine) = req.load {
        let tags = req
            .tags
            .iter()
            .map(|t| Ok(with_suffix(&spec.expand(t)?, suffix)))
            .collect::<Result<Vec<_>>>()?;
        list.push(Box::new(Load::new(engine, &tags, &defaults, shell)?));
    }
    if req.push {
        let refs: Vec<String> = spec
            .push_refs(&req.tags)?
            .iter()
            .map(|r| with_suffix(r, suffix))
            .collect();
        let mut registry = RegistryOutput::new(&refs, req.registry.clone())?;
        registry.signing_key = signing_key.cloned();
        list.push(Box::new(registry));
    }
    outputs::check_platforms(&list, &spec.build.platforms, req.load_platform)?;
    outputs::check_distinct(&list)?;
    for o in &list {
        o.preflight()?;
    }
    Ok(list)
}

/// The key `--sign` signs with, read (its password asked) before any build work. `--sign` or
/// `--key` on the command line without `--push` is an error; `sign = true` in Cargo.toml
/// only applies when pushing.
fn signing_key(
    req: &BuildRequest,
    spec: &ImageSpec,
    shell: &Shell,
) -> Result<Option<std::sync::Arc<crate::sign::key::SigningKey>>> {
    let flagged = req.overrides.sign == Some(true);
    if !req.push {
        if flagged {
            bail!(
                "--sign signs what --push pushes, and nothing is pushed; add --push (with -t REGISTRY/NAME:TAG), or drop --sign"
            );
        }
        if spec.publish.sign {
            shell.verbose(
                "Note",
                "sign = true applies to pushes; nothing is pushed, so nothing is signed",
            );
        }
        return Ok(None);
    }
    if !spec.publish.sign {
        if req.overrides.signing_key.is_some() {
            bail!("--key names a signing key, but signing is off; add --sign, or drop --key");
        }
        return Ok(None);
    }
    let Some(path) = &spec.publish.signing_key else {
        bail!(
            "--sign needs a key: give --key cosign.key (`cargo containerize generate-key-pair` makes one) or set signing-key in [package.metadata.containerize]; keyless signing is the release workflow's (cosign sign)"
        );
    };
    let key = crate::sign::key::SigningKey::load(path, &crate::sign::key::EnvOrPrompt)?;
    shell.verbose(
        "Signing",
        format!("with {} ({})", path.display(), key.public().fingerprint()),
    );
    Ok(Some(std::sync::Arc::new(key)))
}

/// `reference` with the variant's suffix on its tag (none: as it is).
fn with_suffix(reference: &str, suffix: &str) -> String {
    if suffix.is_empty() {
        reference.to_string()
    } else {
        crate::util::reference::with_tag_suffix(reference, suffix)
    }
}

/// The shared layers (base files, certificates, zones), prepared on another thread while a
/// cold `cargo metadata` runs, for the settings they most likely get: the defaults and the
/// command line's compression. Used only if the resolved settings and target directory turn
/// out the same; else the result is dropped (its blobs are valid cache entries all the same).
struct Speculation {
    inputs: SharedInputs,
    target_dir: PathBuf,
    layers: std::thread::JoinHandle<Result<Vec<Layer>>>,
}

fn speculate(req: &BuildRequest, shell: &Shell) -> Option<Speculation> {
    use crate::metadata::values::{CaSource, TzData};
    let o = &req.overrides;
    if o.ca_certs.is_some() || o.tzdata.is_some() || o.zones.is_some() {
        return None;
    }
    // Only a directory named before cargo answers: --target-dir, or an absolute
    // CARGO_TARGET_DIR (which beats any config file).
    let target_dir = req.cargo.target_dir.clone().or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    })?;
    let kind = o.compression.unwrap_or_default();
    // The settings' own defaults (neither touches the file system).
    let inputs = SharedInputs {
        ca_certs: CaSource::default().resolve(&target_dir).ok()?,
        tzdata: TzData::default(),
        zones: None,
        codec: layers::compress::Codec {
            kind,
            level: o.compression_level.unwrap_or(kind.default_level()),
        },
        base_has: Vec::new(),
    };
    let (guess, dir, shell) = (inputs.clone(), target_dir.clone(), shell.clone());
    let layers = std::thread::spawn(move || {
        let store = BlobStore::for_target(&dir, &shell)?;
        layers::shared_layers(&guess, &store)
    });
    Some(Speculation {
        inputs,
        target_dir,
        layers,
    })
}

/// Each binary, verified, with its layer, the line that says so, and (when documents about
/// it are asked for) its sha256 and where it was built.
type BuiltLayers = Vec<(Platform, (Layer, String, Option<BinaryFact>))>;

/// What the run knows once the settings are resolved and the outputs planned, before any
/// build work: the first step of [`run`].
struct Plan {
    project: metadata::Project,
    spec: ImageSpec,
    git: git::GitInfo,
    /// git's full answer, still coming, when `git` was read without it ([`git::quick`]).
    git_later: Option<git::Pending>,
    outputs: Vec<Box<dyn Output>>,
    /// The debug variant's outputs (`--debug`): the same, each tag with `-debug`.
    debug_outputs: Vec<Box<dyn Output>>,
    attest: AttestOptions,
    store: BlobStore,
    shared_inputs: SharedInputs,
    /// The shared layers speculated during a cold `cargo metadata`, if they fit.
    speculated: Option<std::thread::JoinHandle<Result<Vec<Layer>>>>,
    /// The base images (`from`, and `debug-from` with `--debug`), resolved and pulled.
    bases: Bases,
}

/// The resolved bases: none for scratch.
#[derive(Default)]
struct Bases {
    main: Option<image::base::Resolved>,
    debug: Option<image::base::Resolved>,
}

pub fn run(req: &BuildRequest, shell: &Shell) -> Result<Report> {
    shell.start_timings();
    // 1. metadata, the base images (`image::base`), and every check before the build
    let mut plan = plan(req, shell)?;
    // 2.–4. build, verify, layers
    let (built, shared, files) = build_and_layer(
        req,
        &plan.project,
        &plan.spec,
        &plan.store,
        &plan.shared_inputs,
        plan.speculated.take(),
        plan.attest.any(),
        shell,
    )?;
    shell.timing("build");
    if let Some(pending) = plan.git_later.take() {
        plan.git = settle_git(&plan.git, pending, &mut plan.spec, &plan.project, shell);
    }
    // 5. image
    let binaries = verified(&built, shell);
    let mut image = assemble_image(
        &plan.spec,
        &built,
        &shared,
        files.as_ref(),
        plan.bases.main.as_ref(),
        &plan.store,
        shell,
    )?;
    // 6. attest
    let rustc = if plan.attest.any() {
        rustc_version(req, &plan.project, shell)?
    } else {
        None
    };
    let facts = |base_has| attest::Facts {
        project: &plan.project,
        spec: &plan.spec,
        cargo: &req.cargo,
        binaries: &binaries,
        git: &plan.git,
        rustc: rustc.as_deref(),
        base_has,
    };
    let referrers = if plan.attest.any() {
        let facts = facts(&plan.shared_inputs.base_has);
        attach(&mut image, &plan.store, &facts, &plan.attest, shell)?
    } else {
        vec![]
    };
    // 7. outputs
    let mut report = write_outputs(
        &plan.outputs,
        &plan.spec,
        &image,
        &plan.store,
        referrers,
        shell,
    )?;
    // The debug variant (`--debug`): the same binaries and files on `debug-from`, a full
    // image of its own: its referrers, its signatures, its report.
    if let Some(debug) = &plan.bases.debug {
        let inputs = shared_inputs_on(&plan.spec, Some(debug));
        let facts = facts(&inputs.base_has);
        let variant = write_debug(&plan, debug, &inputs, &built, files.as_ref(), &facts, shell)?;
        report.debug = Some(Box::new(variant));
    }
    Ok(report)
}

/// The debug variant: the same binaries and files on `debug-from` (the shared layers made
/// again for its base files, `inputs`), with the documents the image gets, written to the
/// `-debug` outputs (signed when the image is). Returns its report.
fn write_debug(
    plan: &Plan,
    base: &image::base::Resolved,
    inputs: &SharedInputs,
    built: &BuiltLayers,
    files: Option<&Layer>,
    facts: &attest::Facts,
    shell: &Shell,
) -> Result<Report> {
    let shared = layers::shared_layers(inputs, &plan.store)?;
    let mut image = assemble_image(
        &plan.spec,
        built,
        &shared,
        files,
        Some(base),
        &plan.store,
        shell,
    )?;
    let referrers = if plan.attest.any() {
        attach(&mut image, &plan.store, facts, &plan.attest, shell)?
    } else {
        vec![]
    };
    let report = write_outputs(
        &plan.debug_outputs,
        &plan.spec,
        &image,
        &plan.store,
        referrers,
        shell,
    )?;
    shell.status(
        "Debug",
        format!("{} on {}", image.digest(), base.from.name()),
    );
    Ok(report)
}

/// Says that each binary is verified (after cargo is done, not into its progress bar), and
/// returns what documents about the image need of each (empty when none are asked for).
fn verified(built: &BuiltLayers, shell: &Shell) -> Vec<BinaryFact> {
    let mut binaries = Vec::new();
    for (_, (_, said, fact)) in built {
        shell.status("Verified", said);
        binaries.extend(fact.clone());
    }
    binaries
}

/// The project and its settings, git's answer, the outputs and the documents to attach, all
/// checked before any build work.
fn plan(req: &BuildRequest, shell: &Shell) -> Result<Plan> {
    let (project, speculation) = load_project(req, shell)?;
    shell.timing("metadata");
    // git answers in the background while the spec and outputs are planned: the build needs
    // its commit time as SOURCE_DATE_EPOCH, and tags may name {git_sha}. Outside any
    // repository git would say nothing, so it is not started.
    let mut pending_git = (!git::outside_any_repository(&project.package_root))
        .then(|| git::spawn(project.package_root.clone(), shell.clone()));
    let mut git_info = git::GitInfo::default();
    let mut spec = ImageSpec::resolve(&project, &Default::default())?;
    if spec.tags_use_git(&req.tags)
        && let Some(pending) = pending_git.take()
    {
        git_info = pending.wait();
        spec.apply_git(&git_info, &project.settings);
    }
    // One key (its password asked once) signs the image and its debug variant.
    let key = signing_key(req, &spec, shell)?;
    let outputs = plan_outputs(req, &spec, &project.target_dir, "", key.as_ref(), shell)?;
    let debug_outputs = if req.debug {
        let dir = &project.target_dir;
        plan_outputs(req, &spec, dir, DEBUG_SUFFIX, key.as_ref(), shell)?
    } else {
        vec![]
    };
    if req.binary.is_some() && spec.build.platforms.len() > 1 {
        bail!(
            "--binary packages one prebuilt file, but {} platforms were asked for; give one --platform",
            spec.build.platforms.len()
        );
    }
    let attest = attest_options(req, &project, &spec)?;
    shell.timing("spec and outputs planned");
    let store = BlobStore::for_target(&project.target_dir, shell)?;
    let bases = resolve_bases(req, &project, &spec, &store, shell)?;
    let shared_inputs = shared_inputs_on(&spec, bases.main.as_ref());
    let speculated = speculation
        .filter(|s| s.inputs == shared_inputs && s.target_dir == project.target_dir)
        .map(|s| s.layers);
    // The build sees the image's epoch: a build script that embeds the build time (vergen,
    // built, shadow-rs) then embeds the commit's, and two clean builds give one digest. When
    // HEAD's commit and its time are known without git, git's `status` (is the checkout
    // dirty?) is collected after the build instead of before it.
    let mut git_later = None;
    if let Some(pending) = pending_git.take() {
        match git::quick(&project.package_root, shell) {
            Some((sha, time)) => {
                git_info = git::GitInfo {
                    revision: Some(sha.clone()),
                    sha: Some(sha),
                    commit_time: Some(time),
                };
                git_later = Some(pending);
            }
            None => git_info = pending.wait(),
        }
        spec.apply_git(&git_info, &project.settings);
    }
    shell.timing("git");
    Ok(Plan {
        project,
        spec,
        git: git_info,
        git_later,
        outputs,
        debug_outputs,
        attest,
        store,
        shared_inputs,
        speculated,
        bases,
    })
}

/// The base images, resolved and pulled before any build work (a platform a base lacks
/// stops the run here), each checked against the paths the settings put into the image.
fn resolve_bases(
    req: &BuildRequest,
    project: &metadata::Project,
    spec: &ImageSpec,
    store: &BlobStore,
    shell: &Shell,
) -> Result<Bases> {
    if req.debug && spec.layers.debug_from.is_none() {
        bail!(
            "--debug builds the image on `debug-from` too, which is not set; set debug-from in [package.metadata.containerize] or pass --debug-from REF"
        );
    }
    // Credentials from the command line are the push's: they go to a base's registry only
    // when it is the registry pushed to.
    let pushed_to: Vec<String> = if req.push {
        spec.push_refs(&req.tags)?
            .iter()
            .filter_map(|r| crate::util::reference::Reference::parse(r).ok())
            .map(|r| r.registry)
            .collect()
    } else {
        vec![]
    };
    let cx = image::base::Inputs {
        registry: &req.registry,
        credential_registries: &pushed_to,
        offline: req.cargo.offline || req.cargo.frozen,
        store,
        shell,
        root: &project.package_root,
    };
    let resolve = |from: &metadata::values::BaseRef| -> Result<Option<image::base::Resolved>> {
        if from.is_scratch() {
            return Ok(None);
        }
        let resolved = image::base::resolve(from, &spec.build.platforms, &cx)?;
        image::base::check_collisions(spec, &resolved)?;
        image::base::warn_replaced(spec, &resolved, shell);
        Ok(Some(resolved))
    };
    let main = resolve(&spec.layers.from)?;
    let debug = match (&spec.layers.debug_from, req.debug) {
        (Some(from), true) => resolve(from)?,
        _ => None,
    };
    shell.timing("bases");
    Ok(Bases { main, debug })
}

/// The shared layers' inputs on `base`: the base files it already has are left out of ours.
fn shared_inputs_on(spec: &ImageSpec, base: Option<&image::base::Resolved>) -> SharedInputs {
    let mut inputs = SharedInputs::of(spec);
    if let Some(base) = base {
        inputs.base_has = layers::base::content()
            .entries
            .into_iter()
            .map(|e| e.path)
            .filter(|p| base.has(p))
            .collect();
    }
    inputs
}

/// git's full answer, collected after the build that used `early` (HEAD's commit and time,
/// read without git): the revision label gains `-dirty` when the checkout is. Should HEAD have
/// moved meanwhile (or git not answer), the image keeps the commit and time the build saw,
/// marked `-dirty`, as its sources were not that commit's alone.
fn settle_git(
    early: &git::GitInfo,
    pending: git::Pending,
    spec: &mut ImageSpec,
    project: &metadata::Project,
    shell: &Shell,
) -> git::GitInfo {
    let full = pending.wait();
    let info = if full.sha == early.sha {
        full
    } else {
        shell.verbose(
            "Note",
            format!(
                "HEAD was {0} before the build and is {1} after it; the revision label says {0}-dirty",
                early.sha.as_deref().unwrap_or_default(),
                full.sha.as_deref().unwrap_or("unknown to git"),
            ),
        );
        git::GitInfo {
            revision: early.sha.as_ref().map(|s| format!("{s}-dirty")),
            ..early.clone()
        }
    };
    spec.apply_git(&info, &project.settings);
    shell.timing("git status");
    info
}

/// `rustc -vV` for the provenance; none for a prebuilt --binary.
fn rustc_version(
    req: &BuildRequest,
    project: &metadata::Project,
    shell: &Shell,
) -> Result<Option<String>> {
    match req.binary {
        Some(_) => Ok(None),
        None => build::invocation::rustc_version(&project.package_root, shell).map(Some),
    }
}

/// Attaches the documents `opts` asks for to `image`, and says so with `-v`.
fn attach(
    image: &mut Image,
    store: &BlobStore,
    facts: &attest::Facts,
    opts: &AttestOptions,
    shell: &Shell,
) -> Result<Vec<Attached>> {
    let attached = attest::attach(image, store, facts, opts)?;
    for a in &attached {
        shell.verbose(
            "Attached",
            format!(
                "{} {} to {} ({})",
                a.digest.short(),
                a.artifact_type,
                a.subject.short(),
                a.platform
            ),
        );
    }
    shell.timing("attest");
    Ok(attached)
}

/// Writes `image` to every output in turn (without its referrers to one that does not carry
/// them) and reports what was written. An output that wrote part of it stops the run with an
/// [`Incomplete`] that still reports what is written.
fn write_outputs(
    outputs: &[Box<dyn Output>],
    spec: &ImageSpec,
    image: &Image,
    store: &BlobStore,
    referrers: Vec<Attached>,
    shell: &Shell,
) -> Result<Report> {
    let mut written: Vec<Written> = Vec::new();
    let bare = image.without_attachments();
    for o in outputs {
        let view = if o.carries_referrers() {
            image
        } else {
            if !image.attachments.is_empty() {
                shell.verbose(
                    "Note",
                    format!(
                        "{} referrer(s) (SBOMs, provenance) not listed in {}: layout-referrers is off, so syft, grype and podman load can read it; --layout-referrers lists them, --push carries them, --sbom-dir writes the SBOMs",
                        image.attachments.len(),
                        o.describe()
                    ),
                );
            }
            &bare
        };
        let w = match o.write(view, store, shell) {
            Ok(w) => w,
            Err(e) => match e.downcast::<outputs::PartlyWritten>() {
                Ok(partial) => {
                    written.push(partial.written);
                    let mut report = Report::new(spec, image, written, referrers);
                    report.error = Some(crate::error_line(&partial.error));
                    return Err(Incomplete {
                        report: Box::new(report),
                        error: partial.error,
                    }
                    .into());
                }
                Err(e) => return Err(e),
            },
        };
        shell.status("Wrote", &w.output);
        written.push(w);
    }
    shell.timing("outputs");
    Ok(Report::new(spec, image, written, referrers))
}

/// Which documents to attach, from the settings and flags; `--sbom-dir` is checked here,
/// before anything is built.
fn attest_options(
    req: &BuildRequest,
    project: &metadata::Project,
    spec: &ImageSpec,
) -> Result<AttestOptions> {
    let sbom = project
        .settings
        .sbom
        .clone()
        .unwrap_or_default()
        .formats()
        .to_vec();
    if let Some(dir) = &req.sbom_dir {
        if sbom.is_empty() {
            bail!(
                "--sbom-dir writes the SBOMs, but none are made (`--sbom none` or `sbom = false`); drop --sbom-dir or name a format, e.g. --sbom spdx"
            );
        }
        attest::sbom::check_dir(dir, &spec.build.bin, &spec.build.platforms, &sbom)?;
    }
    Ok(AttestOptions {
        provenance: project.settings.provenance.unwrap_or(true),
        sbom,
        sbom_dir: req.sbom_dir.clone(),
    })
}

/// The project, its settings merged with the command line's. A cold `cargo metadata` gets
/// the shared layers speculated alongside.
fn load_project(
    req: &BuildRequest,
    shell: &Shell,
) -> Result<(metadata::Project, Option<Speculation>)> {
    // A prebuilt --binary needs no dependency graph (it only tells the build about C code).
    let resolve = req.binary.is_none();
    let mut speculation = None;
    let mut project = match metadata::load_cached(&req.cargo, resolve, shell) {
        Some(p) => p,
        None => {
            speculation = speculate(req, shell);
            metadata::load_fresh(&req.cargo, resolve, shell)?
        }
    };
    project.settings = project.settings.clone().merge(req.overrides.clone());
    Ok((project, speculation))
}

/// Build (every platform at once, or the prebuilt --binary) while another thread writes the
/// layers that do not depend on the binary; verify each binary and write its layer as soon as
/// it is built. Returns the binaries' layers, the shared layers and the files layer.
#[allow(
    clippy::too_many_arguments,
    reason = "the run's values, each borrowed once; the shell is the eighth"
)]
fn build_and_layer(
    req: &BuildRequest,
    project: &metadata::Project,
    spec: &ImageSpec,
    store: &BlobStore,
    shared_inputs: &SharedInputs,
    speculated: Option<std::thread::JoinHandle<Result<Vec<Layer>>>>,
    attest: bool,
    shell: &Shell,
) -> Result<(BuiltLayers, Vec<Layer>, Option<Layer>)> {
    let build_options = BuildOptions {
        platforms: spec.build.platforms.clone(),
        strip: spec.build.strip,
        install_target: req.install_target,
        source_date_epoch: spec.epoch.seconds(),
        allocator: spec.build.allocator,
        auditable: spec.build.auditable,
    };
    let (built, prepared) = std::thread::scope(|scope| {
        let prepared = scope.spawn(|| -> Result<(Vec<Layer>, Option<Layer>)> {
            let shared = match speculated.and_then(|h| h.join().ok()).and_then(|r| r.ok()) {
                Some(layers) => layers,
                None => layers::shared_layers(shared_inputs, store)?,
            };
            Ok((shared, layers::files_layer(spec, store)?))
        });
        // What it says waits for cargo to finish, not to cut into cargo's progress bar.
        let mut on_built = |b: &build::Built| -> Result<(Layer, String, Option<BinaryFact>)> {
            let bin = verify::verify(&b.path, b.platform)?;
            let said = format!(
                "{} is static, {}, {}",
                b.path.display(),
                b.platform,
                indicatif::HumanBytes(bin.size)
            );
            let (layer, sha256) = layers::binary_layer(spec, &bin, store)?;
            let fact = if attest {
                Some(binary_fact(b, sha256, store)?)
            } else {
                None
            };
            Ok((layer, said, fact))
        };
        let built: Result<BuiltLayers> = match &req.binary {
            Some(p) => on_built(&build::Built {
                path: p.clone(),
                platform: spec.build.platforms[0],
                cargo_argv: None,
            })
            .map(|done| vec![(spec.build.platforms[0], done)]),
            None => build::build(project, &req.cargo, &build_options, &mut on_built, shell),
        };
        let prepared = prepared
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the layer thread stopped")));
        (built, prepared)
    });
    let (shared, files) = prepared?;
    Ok((built?, shared, files))
}

/// What documents about the image say of one binary: its sha256 and the cargo command that
/// built it (none for a prebuilt --binary). The sha256 is the layer writer's (`read`, when it
/// read the binary), else the one recorded with the binary's unchanged stat; only otherwise
/// is the binary read again.
fn binary_fact(
    b: &build::Built,
    read: Option<crate::util::digest::Digest>,
    store: &BlobStore,
) -> Result<BinaryFact> {
    let files = crate::blobs::FileDigests::of(store);
    let digest = match read.or_else(|| files.known_sha256(&b.path)) {
        Some(d) => d,
        None => files.hash_both(&b.path)?.1,
    };
    Ok(BinaryFact {
        platform: b.platform,
        path: b.path.clone(),
        digest,
        cargo_argv: b.cargo_argv.clone(),
    })
}

/// The image: per platform the shared layers, the files layer and its binary's, on the
/// platform's base (scratch, the empty one, without `from`); the documents go into the store.
fn assemble_image(
    spec: &ImageSpec,
    built: &BuiltLayers,
    shared: &[Layer],
    files: Option<&Layer>,
    base: Option<&image::base::Resolved>,
    store: &BlobStore,
    shell: &Shell,
) -> Result<Image> {
    let scratch = image::Base::scratch();
    let mut per_platform = Vec::new();
    for (platform, (binary_layer, _, _)) in built {
        let mut platform_layers = shared.to_vec();
        platform_layers.extend(files.cloned());
        platform_layers.push(binary_layer.clone());
        let below = base
            .and_then(|b| b.base_for(*platform))
            .map_or(&scratch, |b| &b.base);
        per_platform.push(image::assemble(spec, *platform, below, platform_layers)?);
    }
    shell.timing("layers, config");
    let index_annotations = base
        .filter(|b| b.is_index)
        .map(image::base::Resolved::index_annotations)
        .unwrap_or_default();
    let image: Image = image::finish_on(spec, per_platform, &index_annotations)?;
    image.store_documents(store)?;
    for p in &image.platforms {
        for l in &p.layers {
            shell.status(
                if l.fresh { "Layer" } else { "Cached" },
                format!(
                    "{} {} ({})",
                    l.digest.short(),
                    l.what,
                    indicatif::HumanBytes(l.size)
                ),
            );
        }
    }
    Ok(image)
}
