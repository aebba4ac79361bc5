//! Checkpoint storage: the files a frontier-aligned checkpoint leaves in `--checkpoint-dir`, and
//! how a restore finds the newest one that is whole.
//!
//! A checkpoint at event time `T` is a directory `ckpt-<T>` holding one part per writer (a worker's
//! operator state, a source's replay points; opaque bytes here, bincode-encoded by [`encode`]) and a
//! `MANIFEST.json` that names every part with its size and CRC-32. Parts are written first, each
//! to a temporary name and renamed, and made durable together before the manifest, which is
//! written last (synced, renamed, directory synced), so a checkpoint without a manifest is
//! unfinished. A restore ([`latest`]) takes the newest checkpoint whose manifest parses and whose
//! every part is present with the size and checksum it names; a torn, truncated or half-written
//! checkpoint is skipped (with a warning) for the one before it.
//! [`prune`] keeps the newest complete ones and removes what is older.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The manifest's file name inside a checkpoint directory.
pub const MANIFEST: &str = "MANIFEST.json";
/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 2;
const PREFIX: &str = "ckpt-";

/// Why a checkpoint cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file system refused (full disk, permissions): the run cannot promise recovery.
    #[error("checkpoint {path}: {error}")]
    Io {
        /// The file or directory.
        path: String,
        /// The operating system's reason.
        error: std::io::Error,
    },
    /// A part or manifest is not what was written (torn write, corruption, another format).
    #[error("checkpoint {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// State that cannot be encoded or decoded (a bug, or a checkpoint of another version).
    #[error("checkpoint state: {0}")]
    Codec(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |error| CheckpointError::Io { path: path.display().to_string(), error }
}

/// One part as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    /// File name inside the checkpoint directory (e.g. `p0-w1.state`).
    pub name: String,
    /// Its length in bytes.
    pub bytes: u64,
    /// CRC-32 (IEEE) of its contents.
    pub crc32: u32,
}

/// The manifest: what the checkpoint is and the parts that make it whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest format ([`FORMAT`]).
    pub format: u32,
    /// The pipeline that wrote it (a restore refuses another pipeline's checkpoint).
    pub pipeline: String,
    /// Event time T: the state of all times < T, and replay points for times >= T.
    pub time: crate::Millis,
    /// Workers per process when written.
    pub workers: usize,
    /// Processes when written.
    pub processes: usize,
    /// Wall-clock milliseconds when it was completed.
    pub written_at: u64,
    /// The state one worker's graph declared (every worker declares the same): a restore into a
    /// graph that declares other state, or another version of it, is refused.
    pub state: Vec<StateInfo>,
    /// Every part, by name.
    pub parts: Vec<PartInfo>,
}

/// One declared piece of operator state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateInfo {
    /// Its name, unique in the graph.
    pub name: String,
    /// The version of its encoding: bump it when the state's type changes.
    pub version: u32,
}

impl Manifest {
    /// Total size of the parts in bytes.
    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }
}

/// The directory of checkpoint `time` under `root` (zero-padded so names sort by time). Parts
/// valid until the end of the input (time `u64::MAX`) live in `ckpt-end`, which is never a
/// checkpoint itself.
pub fn dir_of(root: &Path, time: crate::Millis) -> PathBuf {
    if time == crate::Millis::MAX {
        return root.join(END_DIR);
    }
    root.join(format!("{PREFIX}{time:020}"))
}

/// Where parts valid until the end of the input are written.
pub const END_DIR: &str = "ckpt-end";

/// Writes `bytes` to `path` so that the name appears only with the whole content: a temporary
/// file, synced, renamed over the name, then the directory synced.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let file = write_renamed(path, bytes)?;
    file.sync_all().map_err(io(path))?;
    // The rename is durable once the directory is.
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Writes a temporary file and renames it over `path`; not synced (see [`commit`]).
fn write_renamed(path: &Path, bytes: &[u8]) -> Result<File, CheckpointError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    Ok(file)
}

fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Makes the parts of checkpoint directory `dir` durable before its manifest names them. On Linux
/// one `syncfs` flushes the file system they are on (parts, their directory entries and hard
/// links, and the outputs' bytes) in one call: a sync per part on the workers' path cost a
/// quarter of the throughput at two workers. Elsewhere each part and the directory are synced.
fn sync_parts(dir: &Path, parts: &[PartInfo]) -> Result<(), CheckpointError> {
    #[cfg(target_os = "linux")]
    {
        let _ = parts;
        syncfs(dir)
    }
    #[cfg(not(target_os = "linux"))]
    {
        for p in parts {
            let path = dir.join(&p.name);
            File::open(&path).and_then(|f| f.sync_all()).map_err(io(&path))?;
        }
        sync_dir(dir)
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn syncfs(dir: &Path) -> Result<(), CheckpointError> {
    use std::os::fd::AsRawFd;
    let d = File::open(dir).map_err(io(dir))?;
    // SAFETY: `d` is an open file descriptor for the duration of the call; syncfs only reads it.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(io(dir)(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Writes one part of checkpoint `time` and returns what the manifest must say of it.
pub fn write_part(root: &Path, time: crate::Millis, name: &str, bytes: &[u8]) -> Result<PartInfo, CheckpointError> {
    if name.is_empty() || name == MANIFEST || name.contains(['/', '\\']) || name.ends_with(".tmp") {
        return Err(CheckpointError::Invalid { path: name.to_owned(), reason: "not a usable part name".into() });
    }
    let dir = dir_of(root, time);
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    write_renamed(&dir.join(name), bytes)?;
    Ok(PartInfo { name: name.to_owned(), bytes: bytes.len() as u64, crc32: crc32fast::hash(bytes) })
}

/// Completes checkpoint `manifest.time` by writing its manifest, after every part it names (made
/// durable first: parts are written without a sync each).
pub fn commit(root: &Path, manifest: &Manifest) -> Result<(), CheckpointError> {
    let dir = dir_of(root, manifest.time);
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    sync_parts(&dir, &manifest.parts)?;
    let text = serde_json::to_vec_pretty(manifest).map_err(|e| CheckpointError::Codec(e.to_string()))?;
    write_atomically(&dir.join(MANIFEST), &text)
}

/// A complete checkpoint found on disk.
#[derive(Clone, Debug)]
pub struct Found {
    /// Its directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

impl Found {
    /// The bytes of part `name` (checked against the manifest again: the files may have changed
    /// since [`latest`] looked).
    pub fn part(&self, name: &str) -> Result<Vec<u8>, CheckpointError> {
        let info = self.manifest.parts.iter().find(|p| p.name == name).ok_or_else(|| CheckpointError::Invalid {
            path: self.dir.join(name).display().to_string(),
            reason: "not in the manifest".into(),
        })?;
        read_part(&self.dir, info)
    }

    /// Every part, in manifest order.
    pub fn parts(&self) -> Result<Vec<(String, Vec<u8>)>, CheckpointError> {
        self.manifest.parts.iter().map(|p| Ok((p.name.clone(), read_part(&self.dir, p)?))).collect()
    }
}

fn read_part(dir: &Path, info: &PartInfo) -> Result<Vec<u8>, CheckpointError> {
    let path = dir.join(&info.name);
    let bytes = fs::read(&path).map_err(io(&path))?;
    let invalid = |reason: String| CheckpointError::Invalid { path: path.display().to_string(), reason };
    if bytes.len() as u64 != info.bytes {
        return Err(invalid(format!("{} bytes, the manifest says {}", bytes.len(), info.bytes)));
    }
    let crc = crc32fast::hash(&bytes);
    if crc != info.crc32 {
        return Err(invalid(format!("checksum {crc:08x}, the manifest says {:08x}", info.crc32)));
    }
    Ok(bytes)
}

/// Checkpoint directories under `root`, newest first, with their times.
pub(crate) fn listed(root: &Path) -> Result<Vec<(crate::Millis, PathBuf)>, CheckpointError> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(root)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(root))?;
        let name = entry.file_name();
        let time = name.to_str().and_then(|n| n.strip_prefix(PREFIX)).and_then(|t| t.parse::<crate::Millis>().ok());
        if let Some(time) = time {
            out.push((time, entry.path()));
        }
    }
    out.sort_by_key(|(time, _)| std::cmp::Reverse(*time));
    Ok(out)
}

/// Reads and checks one checkpoint directory: its manifest and every part it names.
fn check(dir: &Path, time: crate::Millis) -> Result<Manifest, CheckpointError> {
    let path = dir.join(MANIFEST);
    let text = fs::read(&path).map_err(io(&path))?;
    let invalid = |reason: String| CheckpointError::Invalid { path: path.display().to_string(), reason };
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
    if manifest.format != FORMAT {
        return Err(invalid(format!("format {}, this build reads {FORMAT}", manifest.format)));
    }
    if manifest.time != time {
        return Err(invalid(format!("time {} in a directory for {time}", manifest.time)));
    }
    for part in &manifest.parts {
        read_part(dir, part)?;
    }
    Ok(manifest)
}

/// The newest complete checkpoint of `pipeline` under `root`, if any. Incomplete or damaged ones
/// are skipped with a warning; one of another pipeline is an error (the directory is shared by
/// mistake, and restoring from it would be wrong).
pub fn latest(root: &Path, pipeline: &str) -> Result<Option<Found>, CheckpointError> {
    for (time, dir) in listed(root)? {
        match check(&dir, time) {
            Ok(manifest) if manifest.pipeline != pipeline => {
                return Err(CheckpointError::Invalid {
                    path: dir.display().to_string(),
                    reason: format!("written by the {} pipeline, not {pipeline}", manifest.pipeline),
                });
            }
            Ok(manifest) => return Ok(Some(Found { dir, manifest })),
            // A checkpoint without its manifest was still being written.
            Err(_) if !dir.join(MANIFEST).exists() => {
                tracing::info!(dir = %dir.display(), "skipping an unfinished checkpoint")
            }
            Err(e) => tracing::warn!(error = %e, "skipping an incomplete or damaged checkpoint"),
        }
    }
    Ok(None)
}

/// Removes all but the newest `keep` committed checkpoints, and every unfinished one older than
/// the newest committed one (newer unfinished ones may still be being written). Committed here
/// means the manifest is there: reading every part back at each commit would cost more than the
/// checkpoint; [`latest`] still checks every part before a restore. Returns what it removed.
pub fn prune(root: &Path, keep: usize) -> Result<Vec<PathBuf>, CheckpointError> {
    let mut complete = 0;
    let mut removed = Vec::new();
    for (_, dir) in listed(root)? {
        let whole = dir.join(MANIFEST).is_file();
        let remove = if whole {
            complete += 1;
            complete > keep.max(1)
        } else {
            complete > 0
        };
        if remove {
            fs::remove_dir_all(&dir).map_err(io(&dir))?;
            removed.push(dir);
        }
    }
    Ok(removed)
}

/// Removes every checkpoint directory newer than `time`: a restore from `time` continues from
/// there, and parts of the stopped run must not mix with the new run's.
pub fn remove_after(root: &Path, time: crate::Millis) -> Result<Vec<PathBuf>, CheckpointError> {
    let mut removed = Vec::new();
    for (t, dir) in listed(root)? {
        if t > time {
            fs::remove_dir_all(&dir).map_err(io(&dir))?;
            removed.push(dir);
        }
    }
    let end = root.join(END_DIR);
    if end.is_dir() {
        fs::remove_dir_all(&end).map_err(io(&end))?;
        removed.push(end);
    }
    Ok(removed)
}

/// Encodes state for a part (bincode: compact, and the same bytes for the same state).
pub fn encode<T: Serialize>(state: &T) -> Result<Vec<u8>, CheckpointError> {
    bincode::serialize(state).map_err(|e| CheckpointError::Codec(e.to_string()))
}

/// Decodes a part's state.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CheckpointError> {
    bincode::deserialize(bytes).map_err(|e| CheckpointError::Codec(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::BTreeMap;

    type State = BTreeMap<String, (u64, f64)>;

    fn state(n: u64) -> State {
        (0..n).map(|i| (format!("asset-{i}"), (i * 1000, i as f64 / 3.0))).collect()
    }

    /// Writes a checkpoint at `time` with one part per worker, like a two-worker run would.
    fn write(root: &Path, time: u64) -> Manifest {
        let parts = (0..2)
            .map(|w| write_part(root, time, &format!("p0-w{w}.state"), &encode(&state(time + w)).unwrap()).unwrap())
            .collect();
        let manifest = Manifest {
            format: FORMAT,
            pipeline: "trading".into(),
            time,
            workers: 2,
            processes: 1,
            written_at: 0,
            state: Vec::new(),
            parts,
        };
        commit(root, &manifest).unwrap();
        manifest
    }

    #[test]
    fn the_newest_complete_checkpoint_is_restored_with_its_state() {
        let root = tempfile::tempdir().unwrap();
        assert!(latest(root.path(), "trading").unwrap().is_none(), "nothing yet");
        write(root.path(), 10_000);
        let newest = write(root.path(), 20_000);
        let found = latest(root.path(), "trading").unwrap().unwrap();
        assert_eq!(found.manifest, newest);
        let back: State = decode(&found.part("p0-w1.state").unwrap()).unwrap();
        assert_eq!(back, state(20_001));
        assert_eq!(found.parts().unwrap().len(), 2);
        assert!(found.manifest.bytes() > 0);
    }

    #[test]
    fn a_checkpoint_without_its_manifest_is_not_used() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), 10_000);
        // The run died between the parts and the manifest.
        write_part(root.path(), 20_000, "p0-w0.state", b"half").unwrap();
        assert_eq!(latest(root.path(), "trading").unwrap().unwrap().manifest.time, 10_000);
    }

    #[test]
    fn torn_truncated_or_corrupt_checkpoints_fall_back_to_the_previous_one() {
        type Damage = (&'static str, fn(&Path));
        let damage: [Damage; 5] = [
            ("truncated part", |d| {
                let p = d.join("p0-w1.state");
                let len = fs::metadata(&p).unwrap().len();
                File::options().write(true).open(&p).unwrap().set_len(len / 2).unwrap();
            }),
            ("flipped byte", |d| {
                let p = d.join("p0-w0.state");
                let mut bytes = fs::read(&p).unwrap();
                bytes[3] ^= 0xff;
                fs::write(&p, bytes).unwrap();
            }),
            ("missing part", |d| fs::remove_file(d.join("p0-w0.state")).unwrap()),
            ("truncated manifest", |d| {
                let p = d.join(MANIFEST);
                let text = fs::read(&p).unwrap();
                fs::write(&p, &text[..text.len() / 2]).unwrap();
            }),
            ("empty manifest", |d| fs::write(d.join(MANIFEST), b"").unwrap()),
        ];
        for (what, damage) in damage {
            let root = tempfile::tempdir().unwrap();
            write(root.path(), 10_000);
            write(root.path(), 20_000);
            damage(&dir_of(root.path(), 20_000));
            let found = latest(root.path(), "trading").unwrap().unwrap();
            assert_eq!(found.manifest.time, 10_000, "{what}");
            let back: State = decode(&found.part("p0-w0.state").unwrap()).unwrap();
            assert_eq!(back, state(10_000), "{what}");
        }
    }

    #[test]
    fn a_part_changed_after_the_check_is_refused_on_read() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), 10_000);
        let found = latest(root.path(), "trading").unwrap().unwrap();
        fs::write(found.dir.join("p0-w0.state"), b"other bytes").unwrap();
        let e = found.part("p0-w0.state").unwrap_err().to_string();
        assert!(e.contains("bytes, the manifest says"), "{e}");
        assert!(found.part("nope").unwrap_err().to_string().contains("not in the manifest"));
    }

    #[test]
    fn another_pipelines_checkpoint_is_an_error_not_a_restore() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), 10_000);
        let e = latest(root.path(), "flight").unwrap_err().to_string();
        assert!(e.contains("written by the trading pipeline, not flight"), "{e}");
    }

    #[test]
    fn prune_keeps_the_newest_complete_ones_and_unfinished_newer_ones() {
        let root = tempfile::tempdir().unwrap();
        for t in [1_000, 2_000, 3_000, 4_000] {
            write(root.path(), t);
        }
        write_part(root.path(), 500, "p0-w0.state", b"old, unfinished").unwrap();
        write_part(root.path(), 5_000, "p0-w0.state", b"being written").unwrap();
        let removed = prune(root.path(), 2).unwrap();
        assert_eq!(removed.len(), 3, "{removed:?}");
        let left: Vec<u64> = listed(root.path()).unwrap().into_iter().map(|(t, _)| t).collect();
        assert_eq!(left, vec![5_000, 4_000, 3_000]);
    }

    #[test]
    fn bad_part_names_and_another_format_are_refused() {
        let root = tempfile::tempdir().unwrap();
        for name in ["", "a/b", MANIFEST, "x.tmp"] {
            assert!(write_part(root.path(), 1, name, b"x").is_err(), "{name:?}");
        }
        let mut manifest = write(root.path(), 7_000);
        manifest.format = FORMAT + 1;
        commit(root.path(), &manifest).unwrap();
        assert!(latest(root.path(), "trading").unwrap().is_none());
        let e = decode::<State>(b"\x01").unwrap_err();
        assert!(matches!(e, CheckpointError::Codec(_)));
    }
}
