//! Reading a values file's blob with its size bounded. libgit2 inflates a whole object to
//! read it, whatever its size: a values file of 512 MiB of spaces is 0.5 MiB in a pack and
//! 512 MiB in memory. The size is read from the object's header first, which inflates nothing.

use git2::{Blob, ObjectType, Oid, Repository};

use super::{GitError, cache::git};

/// Values files are small; a huge one is a mistake or an attack, refused before it is
/// inflated (the largest values files seen in GitOps repositories are tens of KiB).
pub(super) const MAX_VALUES_BYTES: u64 = 1 << 20;

/// The blob `id`, the values file at `path`, when it is a blob of at most
/// [`MAX_VALUES_BYTES`]; its size is checked before it is read.
pub(super) fn values_blob<'r>(
    repo: &'r Repository,
    id: Oid,
    path: &str,
) -> Result<Blob<'r>, GitError> {
    let (size, kind) = git(git(repo.odb())?.read_header(id))?;
    if kind != ObjectType::Blob {
        return Err(GitError::Unsupported {
            path: path.to_string(),
            reason: "is not a regular file",
        });
    }
    if size as u64 > MAX_VALUES_BYTES {
        return Err(GitError::TooLarge {
            path: path.to_string(),
            size: size as u64,
        });
    }
    git(repo.find_blob(id))
}
