//! API keys (DESIGN §9): who may call which endpoint, and the key id that names a caller in the audit and
//! prediction logs.
//!
//! Keys come from the environment variable `[auth] api_keys_env` names (`id:key` pairs separated by commas,
//! read at startup) and from `[auth] api_keys_file` (one `id:key` per line, re-read on SIGHUP,
//! `POST /admin/reload`, and by repository polls when it changed). Only SHA-256 digests of the keys are held, and a presented key is compared with
//! every one of them in constant time, so neither its length nor how much of it matched shows in the timing.
//! A key is never logged: its id is.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::{AuthSettings, Protect};

/// Keys shorter than this are refused: a short key can be guessed.
pub const MIN_KEY_CHARS: usize = 16;

/// The id of the API key a request presented (a request extension, set when the key is valid).
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<str>);

struct Key {
    id: Arc<str>,
    digest: [u8; 32],
}

/// The keys inferd accepts, and which paths need one.
pub struct ApiKeys {
    settings: AuthSettings,
    /// From the environment: fixed for the life of the process.
    from_env: Vec<(String, String)>,
    keys: ArcSwap<Vec<Key>>,
    /// The key file's modification time and size when it was last read (polls re-read it when they change).
    read_stamp: Mutex<Option<(SystemTime, u64)>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<Arc<str>> = self.keys.load().iter().map(|k| k.id.clone()).collect();
        f.debug_struct("ApiKeys").field("protect", &self.settings.protect).field("ids", &ids).finish()
    }
}

impl ApiKeys {
    /// Reads the keys `[auth]` names. A protect mode (or `protect_metrics`) without any key is an error: the
    /// server would refuse everyone, or protect nothing.
    pub fn load(settings: &AuthSettings) -> anyhow::Result<ApiKeys> {
        let from_env = match &settings.api_keys_env {
            Some(var) => {
                let text = std::env::var(var).map_err(|_| {
                    anyhow::anyhow!("configuration: auth.api_keys_env names {var}, which is not set (or not UTF-8)")
                })?;
                parse_pairs(text.split(','), &format!("environment variable {var}"))
                    .map_err(|e| anyhow::anyhow!("configuration: {e}"))?
            }
            None => Vec::new(),
        };
        let keys = ApiKeys {
            settings: settings.clone(),
            from_env,
            keys: ArcSwap::from_pointee(Vec::new()),
            read_stamp: Mutex::new(None),
        };
        let count = keys.reload().map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        anyhow::ensure!(
            !keys.guards_anything() || count > 0,
            "configuration: auth.protect ({:?}) or auth.protect_metrics needs API keys: set auth.api_keys_env or \
             auth.api_keys_file",
            settings.protect
        );
        Ok(keys)
    }

    /// Re-reads the key file (with the environment's keys) and answers how many keys are held now. On an
    /// error (unreadable file, bad line, no key left while a protect mode needs one) the keys held stay.
    pub fn reload(&self) -> Result<usize, String> {
        let mut pairs = self.from_env.clone();
        if let Some(path) = &self.settings.api_keys_file {
            // Stamped before reading: a file changed while being read is read again at the next poll.
            *self.read_stamp.lock().unwrap_or_else(|e| e.into_inner()) = stamp(path);
            pairs.extend(read_file(path)?);
        }
        let mut keys: Vec<Key> = Vec::with_capacity(pairs.len());
        for (id, key) in &pairs {
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            if keys.iter().any(|k| *k.id == **id) {
                return Err(format!("API key id '{id}' appears twice"));
            }
            if keys.iter().any(|k| k.digest == digest) {
                return Err(format!("API key '{id}' is the same key as another id's"));
            }
            keys.push(Key { id: id.as_str().into(), digest });
        }
        if self.guards_anything() && keys.is_empty() && !self.keys.load().is_empty() {
            return Err("no API key left while auth.protect needs one: keeping the keys held".to_string());
        }
        let count = keys.len();
        self.keys.store(Arc::new(keys));
        Ok(count)
    }

    /// Whether any path needs a key (a protect mode, or `protect_metrics`).
    fn guards_anything(&self) -> bool {
        self.settings.protect != Protect::None || self.settings.protect_metrics
    }

    /// Whether a key file is configured (and so re-read on reload).
    pub fn has_file(&self) -> bool {
        self.settings.api_keys_file.is_some()
    }

    /// Re-reads the key file if its modification time or size changed since it was last read (repository
    /// polls call this, so a rotated Kubernetes Secret is taken without a signal); None when unchanged.
    pub fn reload_if_changed(&self) -> Option<Result<usize, String>> {
        let path = self.settings.api_keys_file.as_ref()?;
        let changed = stamp(path) != *self.read_stamp.lock().unwrap_or_else(|e| e.into_inner());
        changed.then(|| self.reload())
    }

    /// Whether any key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.load().is_empty()
    }

    /// The id of the key `presented` is, comparing it with every key held in constant time.
    pub fn identify(&self, presented: &[u8]) -> Option<Arc<str>> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let keys = self.keys.load();
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, key) in keys.iter().enumerate() {
            let equal = key.digest.ct_eq(&digest);
            index.conditional_assign(&(i as u32), equal);
            found |= equal;
        }
        bool::from(found).then(|| keys[index as usize].id.clone())
    }

    /// Whether `path` needs a key under `[auth]`.
    pub fn guards(&self, path: &str) -> bool {
        if path == "/metrics" {
            return self.settings.protect_metrics;
        }
        match self.settings.protect {
            Protect::None => false,
            Protect::Admin => path.starts_with("/admin/"),
            Protect::All => !(matches!(path, "/health/live" | "/health/ready") || path.starts_with("/v2/health/")),
        }
    }
}

/// The key of an `Authorization: Bearer <key>` header value.
pub fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| value[7..].trim_ascii()).filter(|key| !key.is_empty())
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

fn read_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read the API key file: {e}", path.display()))?;
    let lines = text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#'));
    parse_pairs(lines, &path.display().to_string())
}

/// `id:key` pairs; `source` names where they came from in errors (never the key itself).
fn parse_pairs<'a>(items: impl Iterator<Item = &'a str>, source: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for (n, item) in items.map(str::trim).filter(|item| !item.is_empty()).enumerate() {
        let Some((id, key)) = item.split_once(':') else {
            return Err(format!("{source}: entry {}: expected id:key", n + 1));
        };
        let (id, key) = (id.trim(), key.trim());
        let valid_id = !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid_id {
            return Err(format!("{source}: entry {}: the id must be letters, digits, '-', '_' or '.'", n + 1));
        }
        if key.chars().count() < MIN_KEY_CHARS || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{source}: key '{id}': expected at least {MIN_KEY_CHARS} characters without spaces"));
        }
        pairs.push((id.to_string(), key.to_string()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(protect: Protect, file: Option<&Path>) -> Result<ApiKeys, String> {
        let settings = AuthSettings {
            api_keys_env: None,
            api_keys_file: file.map(Path::to_path_buf),
            protect,
            protect_metrics: false,
        };
        ApiKeys::load(&settings).map_err(|e| e.to_string())
    }

    #[test]
    fn identifies_each_key_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(&file, "# ops\nalice: alice-0123456789abcdef\n\nbob:bob-0123456789abcdef-longer\n").unwrap();
        let keys = keys(Protect::All, Some(&file)).unwrap();
        assert_eq!(keys.identify(b"alice-0123456789abcdef").as_deref(), Some("alice"));
        assert_eq!(keys.identify(b"bob-0123456789abcdef-longer").as_deref(), Some("bob"));
        for wrong in [&b""[..], b"alice", b"alice-0123456789abcdeF", b"alice-0123456789abcdef ", b"alice"] {
            assert_eq!(keys.identify(wrong), None);
        }
    }

    #[test]
    fn bad_key_files_are_refused_naming_the_entry_never_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        for (text, expected) in [
            ("alice-0123456789abcdef\n", "entry 1: expected id:key"),
            ("alice:short\n", "key 'alice': expected at least 16 characters"),
            ("a b:alice-0123456789abcdef\n", "entry 1: the id must be"),
            ("a:alice-0123456789abcdef\na:other-0123456789abcdef\n", "id 'a' appears twice"),
            ("a:alice-0123456789abcdef\nb:alice-0123456789abcdef\n", "'b' is the same key"),
        ] {
            std::fs::write(&file, text).unwrap();
            let error = keys(Protect::None, Some(&file)).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(!error.contains("0123456789abcdef"), "a key leaked into: {error}");
        }
    }

    #[test]
    fn a_protect_mode_without_keys_refuses_to_start() {
        let error = keys(Protect::Admin, None).unwrap_err();
        assert!(error.contains("needs API keys"), "{error}");
        assert!(keys(Protect::None, None).is_ok());
    }

    #[test]
    fn guarded_paths_follow_the_protect_mode() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(&file, "a:alice-0123456789abcdef\n").unwrap();
        let admin = keys(Protect::Admin, Some(&file)).unwrap();
        let all = keys(Protect::All, Some(&file)).unwrap();
        for (path, by_admin, by_all) in [
            ("/admin/reload", true, true),
            ("/predict", false, true),
            ("/v2/models/wine/infer", false, true),
            ("/health", false, true),
            ("/openapi.json", false, true),
            ("/health/live", false, false),
            ("/health/ready", false, false),
            ("/v2/health/ready", false, false),
            ("/metrics", false, false),
        ] {
            assert_eq!(admin.guards(path), by_admin, "admin: {path}");
            assert_eq!(all.guards(path), by_all, "all: {path}");
        }
    }

    #[test]
    fn bearer_takes_the_key_of_the_header() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bear"), None);
    }
}
