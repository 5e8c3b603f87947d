//! The model repository: `models/NAME/VERSION/{model.onnx, inferd.toml, reference.json, fixtures.json}`.
//!
//! [`ModelTable::load`] scans the repository, picks the versions the `[models] versions` policy asks for and
//! loads each into a [`ModelVersion`]: manifest parsed, preprocessing compiled, tract plan optimised and
//! warmed up, fixtures replayed. The table is immutable once built; the server holds it behind an `ArcSwap`
//! so a later reload can replace it whole while requests finish on the versions they started with.

pub mod fixtures;
pub mod manifest;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{ModelsSettings, Routing, VersionPolicy};
use crate::monitor::reference::ReferenceProfile;
use crate::monitor::{DriftSettings, VersionMonitor};
use crate::preprocess::Pipeline;
use crate::runtime::{Batcher, ModelPlan, OutputKind, RuntimeError};
use manifest::{Manifest, Task};

/// Errors of the repository layer; each names the file (and field) at fault in one line.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Manifest { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Model(#[from] RuntimeError),
}

fn invalid(path: &Path, message: impl Into<String>) -> RepositoryError {
    RepositoryError::Invalid { path: path.to_path_buf(), message: message.into() }
}

/// One loaded, warmed-up model version: everything a request needs, shared read-only.
#[derive(Debug)]
pub struct ModelVersion {
    pub name: String,
    pub version: u64,
    /// The version as it appears in answers and metric labels.
    pub version_label: String,
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub pipeline: Pipeline,
    pub plan: Arc<ModelPlan>,
    /// The version's batch queue (requests are served through it).
    pub batcher: Arc<Batcher>,
    pub reference: Option<ReferenceProfile>,
    pub card: serde_json::Value,
    /// Drift windows and live quality of this version, fed by requests and feedback.
    pub monitor: Arc<VersionMonitor>,
    /// The version directory's files as they were when loaded: a rescan reloads the version when they change.
    pub fingerprint: Fingerprint,
    /// How long loading took (manifest to warmed-up plan, fixtures replayed).
    pub load_time: std::time::Duration,
}

impl ModelVersion {
    /// Loads and validates `dir` (`models/NAME/VERSION`), and replays `fixtures.json` when present: a version
    /// that does not reproduce its fixtures is refused.
    /// `drift`: the window and thresholds used where the manifest sets none.
    pub fn load(name: &str, version: u64, dir: &Path, drift: DriftSettings) -> Result<ModelVersion, RepositoryError> {
        let started = std::time::Instant::now();
        let mut loaded = ModelVersion::load_unchecked(name, version, dir, drift)?;
        let fixtures_path = dir.join("fixtures.json");
        if fixtures_path.is_file() {
            let fixtures = fixtures::Fixtures::from_path(&fixtures_path).map_err(|m| invalid(&fixtures_path, m))?;
            let report = fixtures.replay(&loaded);
            if let Some(first) = report.mismatches.first() {
                return Err(invalid(
                    &fixtures_path,
                    format!("{} of {} cases differ; first: {first}", report.mismatches.len(), report.cases),
                ));
            }
        }
        loaded.load_time = started.elapsed();
        Ok(loaded)
    }

    /// Loads and validates `dir` without replaying its fixtures.
    pub fn load_unchecked(
        name: &str,
        version: u64,
        dir: &Path,
        drift: DriftSettings,
    ) -> Result<ModelVersion, RepositoryError> {
        let fingerprint = Fingerprint::of(dir);
        let manifest_path = dir.join("inferd.toml");
        let manifest = Manifest::from_path(&manifest_path)?;
        manifest
            .monitoring
            .validate(manifest.model.task, drift)
            .map_err(|message| RepositoryError::Manifest { path: manifest_path.clone(), message })?;
        let pipeline = Pipeline::compile(&manifest)
            .map_err(|e| RepositoryError::Manifest { path: manifest_path.clone(), message: e.to_string() })?;
        let (output, kind) = output_of(&manifest)
            .map_err(|message| RepositoryError::Manifest { path: manifest_path.clone(), message })?;
        let model_path = dir.join("model.onnx");
        if !model_path.is_file() {
            return Err(invalid(&model_path, "file not found"));
        }
        let plan = ModelPlan::load(&model_path, pipeline.row_width(), &output, kind)?;

        let reference_path = dir.join("reference.json");
        let reference = if reference_path.is_file() {
            Some(ReferenceProfile::from_path(&reference_path, &manifest).map_err(|m| invalid(&reference_path, m))?)
        } else {
            tracing::warn!(model = name, version, "no reference.json: drift monitoring is off for this version");
            None
        };

        let version_label = version.to_string();
        let monitor = VersionMonitor::new(name, &version_label, &manifest, reference.as_ref(), drift)
            .map_err(|m| invalid(&reference_path, m))?;
        let card = manifest.card_json();
        let plan = Arc::new(plan);
        Ok(ModelVersion {
            name: name.to_string(),
            version,
            version_label,
            dir: dir.to_path_buf(),
            manifest,
            pipeline,
            batcher: Arc::new(Batcher::new(plan.clone())),
            plan,
            reference,
            card,
            monitor: Arc::new(monitor),
            fingerprint,
            load_time: std::time::Duration::ZERO,
        })
    }

    pub fn task(&self) -> Task {
        self.manifest.model.task
    }

    /// Class labels (classification), in the probabilities' column order.
    pub fn labels(&self) -> &[String] {
        &self.manifest.outputs.labels
    }
}

/// The ONNX output to keep, and what it holds, from `[outputs]`.
fn output_of(manifest: &Manifest) -> Result<(String, OutputKind), String> {
    let outputs = &manifest.outputs;
    match manifest.model.task {
        Task::Classification => {
            if outputs.labels.len() < 2 {
                return Err("outputs.labels: a classifier needs at least two labels".into());
            }
            if let Some((i, _)) = outputs.labels.iter().enumerate().find(|(i, l)| outputs.labels[..*i].contains(l)) {
                return Err(format!("outputs.labels[{i}]: duplicate label"));
            }
            let name = outputs.probabilities.clone().ok_or("outputs.probabilities: required for classification")?;
            Ok((name, OutputKind::Probabilities { classes: outputs.labels.len() }))
        }
        Task::Regression => {
            if !outputs.labels.is_empty() {
                return Err("outputs.labels: a regression model has no labels".into());
            }
            let name = outputs.value.clone().ok_or("outputs.value: required for regression")?;
            Ok((name, OutputKind::Value))
        }
    }
}

/// Index of the largest value, the first on ties (NaN never wins).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] || values[best].is_nan() {
            best = i;
        }
    }
    best
}

/// All versions of one model that serve, and where its unpinned requests go.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    pub name: String,
    pub versions: BTreeMap<u64, Arc<ModelVersion>>,
    /// As configured or last set; a version it names that is not loaded is passed over.
    pub routing: Routing,
}

impl ModelEntry {
    /// The version unpinned requests get (but a canary's share): the routing's default when it is loaded,
    /// else the highest loaded one.
    pub fn default_version(&self) -> &Arc<ModelVersion> {
        self.routing
            .default
            .and_then(|v| self.versions.get(&v))
            .or_else(|| self.versions.values().next_back())
            .expect("a model entry always has a version")
    }

    /// The version one unpinned request goes to: the canary for its weight's share, else the default.
    pub fn route(&self) -> &Arc<ModelVersion> {
        match self.routing.canary.and_then(|c| self.versions.get(&c.version).map(|v| (v, c.weight))) {
            Some((canary, weight)) if weight > 0.0 && crate::monitor::prediction_log::sample(weight) => canary,
            _ => self.default_version(),
        }
    }

    /// `version` if it is loaded, else why not (`field`: where the routing names it). The one check of a
    /// routing's versions, for `[models.routing]` at startup and for `PUT /admin/models/{name}/routing`.
    pub fn loaded_version(&self, field: &str, version: u64) -> Result<u64, String> {
        match self.versions.contains_key(&version) {
            true => Ok(version),
            false => Err(format!("{field}: version {version} of '{}' is not loaded", self.name)),
        }
    }

    /// The shadow version, when one is set, loaded, and not the version that answered.
    pub fn shadow_of(&self, answering: &ModelVersion) -> Option<&Arc<ModelVersion>> {
        let shadow = self.versions.get(&self.routing.shadow?)?;
        (shadow.version != answering.version).then_some(shadow)
    }
}

/// Why a request's model or version does not resolve.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LookupError {
    #[error("no model named '{0}'")]
    UnknownModel(String),
    #[error("model '{model}' has no loaded version '{version}'")]
    UnknownVersion { model: String, version: String },
    #[error(
        "no default model: several models are served and `[models] default` is not set; use /models/{{name}}/predict"
    )]
    NoDefault,
}

/// Every served model, immutable once built: a rescan (or a routing change) builds the next one beside it.
#[derive(Debug, Default, Clone)]
pub struct ModelTable {
    /// Models with at least one serving version.
    pub models: BTreeMap<String, ModelEntry>,
    pub default_model: Option<String>,
    /// Versions whose files did not load, per model (a model may be here without serving anything).
    pub failures: BTreeMap<String, BTreeMap<u64, Failure>>,
}

/// A version that failed to load, and the files it failed on: it is retried once they change.
#[derive(Debug, Clone)]
pub struct Failure {
    pub reason: String,
    pub fingerprint: Fingerprint,
}

/// The names, sizes and modification times of a version directory's files: what a rescan compares to tell
/// a changed (or still being copied) version from an unchanged one, without reading any file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint(Vec<(String, u64, Option<std::time::SystemTime>)>);

impl Fingerprint {
    pub fn of(dir: &Path) -> Fingerprint {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let metadata = entry.metadata().ok()?;
                let name = entry.file_name().to_string_lossy().into_owned();
                Some((name, metadata.len(), metadata.modified().ok()))
            })
            .collect();
        files.sort();
        Fingerprint(files)
    }
}

/// What a rescan changed, one model version at a time (for metrics and the audit log).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Loaded, validated and warmed up: serving from the swap on. `replaced`: an older load of the same
    /// version (its files changed) stops serving.
    Loaded { model: String, version: u64, replaced: bool },
    /// Its files did not load; anything that served keeps serving.
    Failed { model: String, version: u64, reason: String },
    /// Its directory is gone (or the version policy dropped it): it takes no new requests.
    Unloaded { model: String, version: u64 },
}

impl Change {
    pub fn model(&self) -> &str {
        match self {
            Change::Loaded { model, .. } | Change::Failed { model, .. } | Change::Unloaded { model, .. } => model,
        }
    }

    pub fn version(&self) -> u64 {
        match self {
            Change::Loaded { version, .. } | Change::Failed { version, .. } | Change::Unloaded { version, .. } => {
                *version
            }
        }
    }

    /// `loaded`, `reloaded`, `failed` or `unloaded`.
    pub fn action(&self) -> &'static str {
        match self {
            Change::Loaded { replaced: false, .. } => "loaded",
            Change::Loaded { replaced: true, .. } => "reloaded",
            Change::Failed { .. } => "failed",
            Change::Unloaded { .. } => "unloaded",
        }
    }
}

impl ModelTable {
    /// Scans the repository and loads what the policy selects. Any broken selected version is an error.
    pub fn load(settings: &ModelsSettings, drift: DriftSettings) -> Result<ModelTable, RepositoryError> {
        let root = &settings.repository;
        let mut models = BTreeMap::new();
        for (name, dir) in model_dirs(root)? {
            let available = version_dirs(&dir)?;
            if available.is_empty() {
                return Err(invalid(&dir, "no version directory (a positive integer, e.g. 1/)"));
            }
            let chosen: Vec<u64> = match &settings.versions {
                VersionPolicy::Latest => available.keys().next_back().copied().into_iter().collect(),
                VersionPolicy::All => available.keys().copied().collect(),
                VersionPolicy::List(list) => {
                    if let Some(missing) = list.iter().find(|v| !available.contains_key(v)) {
                        return Err(invalid(
                            &dir.join(missing.to_string()),
                            "version listed in [models] versions not found",
                        ));
                    }
                    list.clone()
                }
            };
            let mut versions = BTreeMap::new();
            for version in chosen {
                let loaded = ModelVersion::load(&name, version, &available[&version], drift)?;
                log_loaded(&loaded);
                versions.insert(version, Arc::new(loaded));
            }
            let routing = settings.routing.get(&name).cloned().unwrap_or_default();
            models.insert(name.clone(), ModelEntry { name, versions, routing });
        }
        if models.is_empty() {
            return Err(invalid(root, "no model directory found"));
        }
        let default_model = match &settings.default {
            Some(name) if !models.contains_key(name) => {
                return Err(invalid(root, format!("[models] default = '{name}' is not a model in the repository")))
            }
            Some(name) => Some(name.clone()),
            None if models.len() == 1 => models.keys().next().cloned(),
            None => None,
        };
        Ok(ModelTable { models, default_model, failures: BTreeMap::new() })
    }

    /// The next table after a rescan of the repository: versions whose files are unchanged are kept as they
    /// are (the same `Arc`), new and changed ones are loaded (blocking: call it off the executor), and a
    /// version that fails replaces nothing: its older load, if any, keeps serving, and under the `"latest"`
    /// policy the newest version that loads serves. A failure is not retried until its files change.
    /// `check`: what the server's settings ask of every version beyond loading (a failure if refused).
    pub fn rescan(
        &self,
        settings: &ModelsSettings,
        drift: DriftSettings,
        check: &dyn Fn(&ModelVersion) -> Result<(), String>,
    ) -> Result<(ModelTable, Vec<Change>), RepositoryError> {
        let mut next = ModelTable::default();
        let mut changes = Vec::new();
        for (name, dir) in model_dirs(&settings.repository)? {
            let available = match version_dirs(&dir) {
                Ok(available) => available,
                Err(error) => {
                    // An unreadable model directory changes nothing this time.
                    tracing::warn!(model = %name, %error, "rescan: model directory unreadable; left as it was");
                    if let Some(entry) = self.models.get(&name) {
                        next.models.insert(name.clone(), entry.clone());
                    }
                    continue;
                }
            };
            let old = self.models.get(&name);
            let old_failures = self.failures.get(&name);
            let mut versions = BTreeMap::new();
            let mut failures = BTreeMap::new();
            // Under "latest", versions are tried newest first until one serves.
            let (candidates, first_only): (Vec<u64>, bool) = match &settings.versions {
                VersionPolicy::Latest => (available.keys().rev().copied().collect(), true),
                VersionPolicy::All => (available.keys().copied().collect(), false),
                VersionPolicy::List(list) => {
                    (list.iter().copied().filter(|v| available.contains_key(v)).collect(), false)
                }
            };
            for version in candidates {
                let path = &available[&version];
                let fingerprint = Fingerprint::of(path);
                let current = old.and_then(|entry| entry.versions.get(&version));
                let serving = match current {
                    Some(loaded) if loaded.fingerprint == fingerprint => Some(loaded.clone()),
                    _ => match old_failures.and_then(|f| f.get(&version)).filter(|f| f.fingerprint == fingerprint) {
                        // Failed on these very files before: not retried, the older load (if any) serves.
                        Some(failure) => {
                            failures.insert(version, failure.clone());
                            current.cloned()
                        }
                        None => match ModelVersion::load(&name, version, path, drift)
                            .map_err(|e| e.to_string())
                            .and_then(|loaded| check(&loaded).map(|()| loaded))
                        {
                            Ok(loaded) => {
                                log_loaded(&loaded);
                                changes.push(Change::Loaded {
                                    model: name.clone(),
                                    version,
                                    replaced: current.is_some(),
                                });
                                Some(Arc::new(loaded))
                            }
                            Err(reason) => {
                                tracing::warn!(model = %name, version, %reason, "model version failed to load");
                                changes.push(Change::Failed { model: name.clone(), version, reason: reason.clone() });
                                failures.insert(version, Failure { reason, fingerprint });
                                current.cloned()
                            }
                        },
                    },
                };
                if let Some(serving) = serving {
                    versions.insert(version, serving);
                    if first_only {
                        break;
                    }
                }
            }
            if let Some(entry) = old {
                for version in entry.versions.keys().filter(|v| !versions.contains_key(v)) {
                    changes.push(Change::Unloaded { model: name.clone(), version: *version });
                }
            }
            if !failures.is_empty() {
                next.failures.insert(name.clone(), failures);
            }
            if !versions.is_empty() {
                let routing = match old {
                    Some(entry) => entry.routing.clone(),
                    None => settings.routing.get(&name).cloned().unwrap_or_default(),
                };
                next.models.insert(name.clone(), ModelEntry { name, versions, routing });
            }
        }
        for (name, entry) in self.models.iter().filter(|(name, _)| !next.models.contains_key(*name)) {
            if next.failures.contains_key(name) {
                continue;
            }
            for version in entry.versions.keys() {
                changes.push(Change::Unloaded { model: name.clone(), version: *version });
            }
        }
        next.default_model = match &settings.default {
            Some(name) => next.models.contains_key(name).then(|| name.clone()),
            None if next.models.len() == 1 => next.models.keys().next().cloned(),
            None => None,
        };
        Ok((next, changes))
    }

    /// Like [`ModelTable::resolve`], with the shadow version that should also run an unpinned request.
    pub fn route(
        &self,
        model: Option<&str>,
        version: Option<&str>,
    ) -> Result<(Arc<ModelVersion>, Option<Arc<ModelVersion>>), LookupError> {
        let answering = self.resolve(model, version)?;
        let shadow = match version {
            Some(_) => None,
            None => self.entry(model)?.shadow_of(&answering).cloned(),
        };
        Ok((answering, shadow))
    }

    /// The entry of a request's model (or the default one).
    pub fn entry(&self, model: Option<&str>) -> Result<&ModelEntry, LookupError> {
        let name = match model {
            Some(name) => name,
            None => self.default_model.as_deref().ok_or(LookupError::NoDefault)?,
        };
        self.models.get(name).ok_or_else(|| LookupError::UnknownModel(name.to_string()))
    }

    /// Resolves a request's model (or the default one) and pinned version (or, unpinned, the version its
    /// routing picks: the canary for its share, else the default).
    pub fn resolve(&self, model: Option<&str>, version: Option<&str>) -> Result<Arc<ModelVersion>, LookupError> {
        let name = match model {
            Some(name) => name,
            None => self.default_model.as_deref().ok_or(LookupError::NoDefault)?,
        };
        let entry = self.models.get(name).ok_or_else(|| LookupError::UnknownModel(name.to_string()))?;
        match version {
            None => Ok(entry.route().clone()),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .and_then(|v| entry.versions.get(&v))
                .cloned()
                .ok_or_else(|| LookupError::UnknownVersion { model: name.to_string(), version: v.to_string() }),
        }
    }
}

fn log_loaded(loaded: &ModelVersion) {
    tracing::info!(
        model = %loaded.name,
        version = loaded.version,
        elapsed_ms = loaded.load_time.as_millis() as u64,
        run_1_row_us = loaded.plan.estimated_ns(1) / 1000.0,
        run_64_rows_us = loaded.plan.estimated_ns(64) / 1000.0,
        batch_invariant = loaded.plan.batch_invariant(),
        "model version loaded"
    );
}

/// Loads one version of one model from the repository (the highest when `version` is `None`), as the server
/// would: fixtures replayed.
pub fn load_version(
    root: &Path,
    name: &str,
    version: Option<u64>,
    drift: DriftSettings,
) -> Result<ModelVersion, RepositoryError> {
    let dir = root.join(name);
    if !is_model_name(name) || !dir.is_dir() {
        return Err(invalid(&dir, "no such model in the repository"));
    }
    let available = version_dirs(&dir)?;
    let (version, path) = match version {
        Some(v) => (v, available.get(&v).ok_or_else(|| invalid(&dir.join(v.to_string()), "no such version"))?),
        None => {
            available.iter().next_back().map(|(v, p)| (*v, p)).ok_or_else(|| invalid(&dir, "no version directory"))?
        }
    };
    ModelVersion::load(name, version, path, drift)
}

/// Model names are `[a-z0-9_-]+`; anything else in the repository (files, dot-directories) is skipped.
pub fn is_model_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A version directory is named by a positive integer written without leading zeros.
pub fn parse_version(name: &str) -> Option<u64> {
    name.parse::<u64>().ok().filter(|v| *v > 0 && v.to_string() == name)
}

fn read_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, RepositoryError> {
    let io = |source| RepositoryError::Io { path: dir.to_path_buf(), source };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.path().is_dir() {
            entries.push((entry.file_name().to_string_lossy().into_owned(), entry.path()));
        }
    }
    entries.sort();
    Ok(entries)
}

fn model_dirs(root: &Path) -> Result<Vec<(String, PathBuf)>, RepositoryError> {
    Ok(read_dir(root)?
        .into_iter()
        .filter(|(name, path)| {
            let keep = is_model_name(name);
            if !keep && !name.starts_with('.') {
                tracing::warn!(path = %path.display(), "skipped: a model directory name is [a-z0-9_-]+");
            }
            keep
        })
        .collect())
}

fn version_dirs(dir: &Path) -> Result<BTreeMap<u64, PathBuf>, RepositoryError> {
    Ok(read_dir(dir)?.into_iter().filter_map(|(name, path)| parse_version(&name).map(|v| (v, path))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_ties_and_never_nan() {
        assert_eq!(argmax(&[0.2, 0.4, 0.4]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.1]), 1);
        assert_eq!(argmax(&[0.5]), 0);
    }

    #[test]
    fn names_and_versions() {
        assert!(is_model_name("breast_cancer-2"));
        assert!(!is_model_name("Breast"));
        assert!(!is_model_name(".staging"));
        assert_eq!(parse_version("12"), Some(12));
        assert_eq!(parse_version("0"), None);
        assert_eq!(parse_version("01"), None);
        assert_eq!(parse_version(".staging-4"), None);
    }
}
