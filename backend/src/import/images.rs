//! The images under `--images`: which exist, and their sizes (read from the file header only).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::ImportError;

pub struct ImageIndex {
    root: PathBuf,
    sizes: HashMap<String, Option<(u32, u32)>>,
}

impl ImageIndex {
    pub fn new(root: &Path) -> Result<Self, ImportError> {
        if !root.is_dir() {
            return Err(ImportError::Usage(format!("--images {}: not a folder", root.display())));
        }
        Ok(Self { root: root.to_path_buf(), sizes: HashMap::new() })
    }

    /// `(width, height)` of `rel` (relative to the root), or `None` when it is missing or not
    /// an image radlens can read.
    pub fn size(&mut self, rel: &str) -> Option<(u32, u32)> {
        let root = &self.root;
        *self.sizes.entry(rel.to_string()).or_insert_with(|| image::image_dimensions(root.join(rel)).ok())
    }

    /// The first of `candidates` that is a readable image.
    pub fn find(&mut self, candidates: &[String]) -> Option<String> {
        candidates.iter().find(|c| self.size(c).is_some()).cloned()
    }

    /// `id` with each extension radlens reads (PNG first: DICOM sets are converted to PNG).
    pub fn find_by_id(&mut self, id: &str) -> Option<String> {
        let candidates: Vec<String> = ["png", "jpg", "jpeg"].iter().map(|ext| format!("{id}.{ext}")).collect();
        self.find(&candidates)
    }
}
