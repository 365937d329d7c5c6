//! The few file operations the state file needs, on the directory preopened for it.
//!
//! In the component they are `wasi:filesystem` calls made directly, opening each file
//! with the flags it needs and no more: the standard library asks for
//! `mutate-directory` on every file it opens for writing, which wasmtime ignores but
//! other hosts (jco's Node shim) refuse. Natively (the tests) they are `std::fs`.

use std::io;
use std::path::Path;
use std::time::Duration;

pub use imp::{age, create_exclusive, read, remove, replace};

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::*;
    use std::io::Write;

    /// The file's bytes, `None` when it does not exist.
    pub fn read(dir: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(dir.join(name)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Write `bytes` to `temporary`, sync it, and rename it over `name`.
    pub fn replace(dir: &Path, name: &str, temporary: &str, bytes: &[u8]) -> io::Result<()> {
        let mut file = std::fs::File::create(dir.join(temporary))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(dir.join(temporary), dir.join(name))
    }

    /// Create `name` if it does not exist: `Ok(false)` when it does.
    pub fn create_exclusive(dir: &Path, name: &str) -> io::Result<bool> {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(name))
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// How long ago `name` was last modified, when that can be told.
    pub fn age(dir: &Path, name: &str) -> Option<Duration> {
        let modified = std::fs::metadata(dir.join(name)).ok()?.modified().ok()?;
        std::time::SystemTime::now().duration_since(modified).ok()
    }

    /// Remove `name`, if it is there.
    pub fn remove(dir: &Path, name: &str) {
        let _ = std::fs::remove_file(dir.join(name));
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::*;
    use wasip2::filesystem::preopens::get_directories;
    use wasip2::filesystem::types::{Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags};

    fn error(code: ErrorCode) -> io::Error {
        let kind = match code {
            ErrorCode::NoEntry => io::ErrorKind::NotFound,
            ErrorCode::Exist => io::ErrorKind::AlreadyExists,
            ErrorCode::Access | ErrorCode::NotPermitted | ErrorCode::ReadOnly => {
                io::ErrorKind::PermissionDenied
            }
            ErrorCode::Unsupported => io::ErrorKind::Unsupported,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, format!("{code:?}"))
    }

    /// The preopened directory mounted at `dir`.
    fn preopen(dir: &Path) -> io::Result<Descriptor> {
        let wanted = dir.to_str().unwrap_or_default().trim_end_matches('/');
        get_directories()
            .into_iter()
            .find(|(_, path)| path.trim_end_matches('/') == wanted)
            .map(|(descriptor, _)| descriptor)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no directory is preopened as {wanted}"),
                )
            })
    }

    pub fn read(dir: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
        let dir = preopen(dir)?;
        let file = match dir.open_at(
            PathFlags::empty(),
            name,
            OpenFlags::empty(),
            DescriptorFlags::READ,
        ) {
            Ok(file) => file,
            Err(ErrorCode::NoEntry) => return Ok(None),
            Err(code) => return Err(error(code)),
        };
        let mut bytes = Vec::new();
        loop {
            let (chunk, end) = file.read(64 * 1024, bytes.len() as u64).map_err(error)?;
            bytes.extend_from_slice(&chunk);
            if end || chunk.is_empty() {
                return Ok(Some(bytes));
            }
        }
    }

    pub fn replace(dir: &Path, name: &str, temporary: &str, bytes: &[u8]) -> io::Result<()> {
        let dir = preopen(dir)?;
        let file = dir
            .open_at(
                PathFlags::empty(),
                temporary,
                OpenFlags::CREATE | OpenFlags::TRUNCATE,
                DescriptorFlags::WRITE,
            )
            .map_err(error)?;
        let mut written = 0;
        while written < bytes.len() {
            written += file
                .write(&bytes[written..], written as u64)
                .map_err(error)? as usize;
        }
        file.sync().map_err(error)?;
        drop(file);
        dir.rename_at(temporary, &dir, name).map_err(error)
    }

    pub fn create_exclusive(dir: &Path, name: &str) -> io::Result<bool> {
        let dir = preopen(dir)?;
        match dir.open_at(
            PathFlags::empty(),
            name,
            OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
            DescriptorFlags::WRITE,
        ) {
            Ok(_) => Ok(true),
            Err(ErrorCode::Exist) => Ok(false),
            Err(code) => Err(error(code)),
        }
    }

    pub fn age(dir: &Path, name: &str) -> Option<Duration> {
        let stat = preopen(dir).ok()?.stat_at(PathFlags::empty(), name).ok()?;
        let modified = stat.data_modification_timestamp?;
        let modified =
            std::time::UNIX_EPOCH + Duration::new(modified.seconds, modified.nanoseconds);
        std::time::SystemTime::now().duration_since(modified).ok()
    }

    pub fn remove(dir: &Path, name: &str) {
        if let Ok(dir) = preopen(dir) {
            let _ = dir.unlink_file_at(name);
        }
    }
}
