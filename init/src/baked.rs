//! BTFs baked into the image, in any of three shapes:
//!
//! ```text
//! <baked>/<release>.btf
//! <baked>/<release>.btf.tar.xz
//! <baked>/<distro>/<version>/<arch>/<release>.btf[.tar.xz]    (a copy of part of BTFHub)
//! ```

use std::path::{Path, PathBuf};

use crate::identity::KernelIdentity;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A plain BTF file, copied as is.
    Btf,
    /// A BTFHub archive, extracted.
    Archive,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub path: PathBuf,
    pub shape: Shape,
}

/// Every place in the baked dir where this kernel's BTF may be, in the order they are tried.
pub fn candidates(baked_dir: &Path, id: &KernelIdentity) -> Vec<Candidate> {
    let mut dirs = vec![baked_dir.to_path_buf()];
    if let Some(tree) = id.btfhub_dir() {
        dirs.push(baked_dir.join(tree));
    }
    let mut out = Vec::new();
    for dir in dirs {
        out.push(Candidate {
            path: dir.join(format!("{}.btf", id.release)),
            shape: Shape::Btf,
        });
        out.push(Candidate {
            path: dir.join(format!("{}.btf.tar.xz", id.release)),
            shape: Shape::Archive,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_shapes_in_order() {
        let id = KernelIdentity {
            release: "5.4.0-91-generic".into(),
            arch: "x86_64".into(),
            distro: Some("ubuntu".into()),
            version: Some("20.04".into()),
        };
        let paths: Vec<_> = candidates(Path::new("/opt/diffkeeper/btf"), &id)
            .into_iter()
            .map(|c| (c.path.display().to_string(), c.shape))
            .collect();
        assert_eq!(
            paths,
            [
                (
                    "/opt/diffkeeper/btf/5.4.0-91-generic.btf".into(),
                    Shape::Btf
                ),
                (
                    "/opt/diffkeeper/btf/5.4.0-91-generic.btf.tar.xz".into(),
                    Shape::Archive
                ),
                (
                    "/opt/diffkeeper/btf/ubuntu/20.04/x86_64/5.4.0-91-generic.btf".into(),
                    Shape::Btf
                ),
                (
                    "/opt/diffkeeper/btf/ubuntu/20.04/x86_64/5.4.0-91-generic.btf.tar.xz".into(),
                    Shape::Archive
                ),
            ]
        );
        let unknown_distro = KernelIdentity { distro: None, ..id };
        assert_eq!(candidates(Path::new("/b"), &unknown_distro).len(), 2);
    }
}
