//! Datanets on a Hugging Face–compatible hub: the client that searches, shows and pulls them
//! ([`client`]), and a small hub that serves a folder of repositories over the same API
//! ([`server`], behind `modelfactory hub serve`).
//!
//! Both sides agree on the real hub's conventions: a Datanet is a *dataset* repository
//! `owner/name` tagged `datanet`; files are fetched from `/datasets/{id}/resolve/{rev}/{path}`
//! with the revision's commit in `X-Repo-Commit` and the file's identity in `ETag`. Published
//! adapters are *model* repositories (`/{id}/resolve/…`), written through the hub's upload API:
//! create the repository, ask which files go to LFS (`preupload`), send those through the Git
//! LFS batch API, then commit the rest inline.

pub mod client;
pub mod server;

pub use client::{
    CommitInfo, DatanetCard, DatanetListing, HubClient, PullProgress, PulledDatanet, RemoteFile,
    open_pulled,
};
pub use server::{HubServer, router, serve, serve_with_shutdown};

/// The two kinds of repository the studio reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoKind {
    /// A Datanet.
    Dataset,
    /// A published adapter.
    Model,
}

impl RepoKind {
    /// The segment in API paths: `/api/datasets/…`, `/api/models/…`.
    pub fn api_segment(self) -> &'static str {
        match self {
            RepoKind::Dataset => "datasets",
            RepoKind::Model => "models",
        }
    }

    /// What precedes the id in file and Git URLs: `datasets/` for datasets, nothing for models.
    pub fn url_prefix(self) -> &'static str {
        match self {
            RepoKind::Dataset => "datasets/",
            RepoKind::Model => "",
        }
    }

    /// The name the create API takes in its `type` field.
    pub fn type_name(self) -> &'static str {
        match self {
            RepoKind::Dataset => "dataset",
            RepoKind::Model => "model",
        }
    }

    pub(crate) fn from_api_segment(segment: &str) -> Option<Self> {
        match segment {
            "datasets" => Some(RepoKind::Dataset),
            "models" => Some(RepoKind::Model),
            _ => None,
        }
    }
}

/// Files at least this large are stored as LFS objects on the real hub (their `ETag` is the
/// sha256 of the content); smaller ones are plain git blobs (`ETag` is the git blob id).
pub const LFS_THRESHOLD: u64 = 10 * 1024 * 1024;

/// Extensions the hub's default `.gitattributes` stores in LFS whatever their size.
const LFS_EXTENSIONS: &[&str] = &[
    "parquet",
    "arrow",
    "safetensors",
    "bin",
    "gguf",
    "pt",
    "pth",
    "ckpt",
    "onnx",
    "npy",
    "npz",
    "zip",
    "gz",
    "zst",
    "tar",
    "tgz",
    "7z",
    "h5",
    "msgpack",
];

/// Whether the hub keeps `path` (of `size` bytes) as an LFS object.
pub fn is_lfs(path: &str, size: u64) -> bool {
    size >= LFS_THRESHOLD
        || path
            .rsplit_once('.')
            .is_some_and(|(_, ext)| LFS_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

/// A repository id, `owner/name`, each part made of letters, digits, `-`, `_` and `.`, with no
/// `--` or `..` and neither starting nor ending with `-` or `.`: the hub's rule, which also
/// keeps ids safe as folder names.
pub fn is_valid_repo_id(id: &str) -> bool {
    match id.split_once('/') {
        Some((owner, name)) => is_valid_id_part(owner) && is_valid_id_part(name),
        None => false,
    }
}

pub(crate) fn is_valid_id_part(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= 96
        && !part.starts_with(['.', '-'])
        && !part.ends_with(['.', '-'])
        && !part.contains("--")
        && !part.contains("..")
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A commit id as a hub reports it, safe to name a folder: letters, digits, `-` and `_`.
pub(crate) fn is_safe_revision(sha: &str) -> bool {
    !sha.is_empty()
        && sha.len() <= 128
        && sha
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The local folder of a Datanet's pulls: `owner--name`, as the hub cache names repositories.
pub fn folder_name(id: &str) -> String {
    id.replace('/', "--")
}

/// The git blob id of `content`: sha1 over `blob {len}\0` and the bytes, what the hub reports
/// as `oid` (and `ETag`) for files kept in git rather than LFS.
pub fn git_blob_oid(content: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(format!("blob {}\0", content.len()).as_bytes());
    sha1.update(content);
    hex::encode(sha1.finish())
}

/// The text of the LFS pointer file that git keeps for an LFS object; the hub reports the git
/// blob id of this pointer as the file's `oid`, and its length as `pointerSize`.
pub fn lfs_pointer(sha256: &str, size: u64) -> String {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n")
}

/// SHA-1, only for git object ids (which git defines with it); nothing here relies on it for
/// integrity, which sha256 provides.
pub(crate) struct Sha1 {
    state: [u32; 5],
    block: [u8; 64],
    filled: usize,
    length: u64,
}

impl Sha1 {
    pub(crate) fn new() -> Self {
        Sha1 {
            state: [
                0x6745_2301,
                0xEFCD_AB89,
                0x98BA_DCFE,
                0x1032_5476,
                0xC3D2_E1F0,
            ],
            block: [0; 64],
            filled: 0,
            length: 0,
        }
    }

    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.length = self.length.wrapping_add(data.len() as u64);
        while !data.is_empty() {
            let take = (64 - self.filled).min(data.len());
            self.block[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled == 64 {
                let block = self.block;
                self.compress(&block);
                self.filled = 0;
            }
        }
    }

    pub(crate) fn finish(mut self) -> [u8; 20] {
        let bits = self.length.wrapping_mul(8);
        self.update(&[0x80]);
        while self.filled != 56 {
            self.update(&[0]);
        }
        self.update(&bits.to_be_bytes());
        let mut out = [0u8; 20];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    fn compress(&mut self, block: &[u8; 64]) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = self.state;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (s, v) in self.state.iter_mut().zip([a, b, c, d, e]) {
            *s = s.wrapping_add(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_matches_the_standard_vectors() {
        let hash = |data: &[u8]| {
            let mut s = Sha1::new();
            s.update(data);
            hex::encode(s.finish())
        };
        assert_eq!(hash(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(hash(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            hash(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        // Fed in odd pieces, a million `a`s.
        let mut s = Sha1::new();
        let piece = [b'a'; 977];
        let mut left = 1_000_000;
        while left > 0 {
            let n = left.min(piece.len());
            s.update(&piece[..n]);
            left -= n;
        }
        assert_eq!(
            hex::encode(s.finish()),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
    }

    #[test]
    fn git_blob_oid_is_what_git_hash_object_prints() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            git_blob_oid(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        // The empty blob.
        assert_eq!(
            git_blob_oid(b""),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
    }

    #[test]
    fn repo_ids_and_lfs_rules() {
        assert!(is_valid_repo_id("owner/name"));
        assert!(is_valid_repo_id("Org-1/data.set_v2"));
        for bad in [
            "",
            "name",
            "a/b/c",
            "../x",
            "a/..",
            "a/.hidden",
            "a/b c",
            "a--b/c",
            "/a",
        ] {
            assert!(!is_valid_repo_id(bad), "{bad:?} accepted");
        }
        assert!(is_lfs("shards/00000.parquet", 10));
        assert!(is_lfs("big.txt", LFS_THRESHOLD));
        assert!(!is_lfs("README.md", 100));
        assert!(!is_lfs("datanet.json", LFS_THRESHOLD - 1));
        assert_eq!(folder_name("o/n"), "o--n");
    }
}
