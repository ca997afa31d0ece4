//! Where weights come from: safetensors files (one, or sharded with an index), with every key
//! renamed to the canonical layout (see [`layout`]). The model code asks for canonical names
//! through a candle `VarBuilder` and never sees a release's own naming.

pub mod layout;
pub mod random;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::error::{ModelError, Result};

/// The safetensors files of a model directory: the shards named by
/// `model.safetensors.index.json`, else `model.safetensors`, else every `*.safetensors`.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        #[derive(Deserialize)]
        struct Index {
            weight_map: HashMap<String, String>,
        }
        let text = std::fs::read_to_string(&index).map_err(|source| ModelError::Io { path: index.clone(), source })?;
        let parsed: Index = serde_json::from_str(&text)
            .map_err(|e| ModelError::Config { file: index.clone(), message: e.to_string() })?;
        let mut shards: Vec<String> = parsed.weight_map.into_values().collect();
        shards.sort();
        shards.dedup();
        let files: Vec<PathBuf> = shards.iter().map(|s| dir.join(s)).collect();
        if let Some(missing) = files.iter().find(|f| !f.exists()) {
            return Err(ModelError::MissingFile { path: missing.clone(), hint: format!(" (a shard listed in {})", index.display()) });
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| ModelError::Io { path: dir.to_path_buf(), source })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ModelError::MissingFile {
            path: single,
            hint: " (nor model.safetensors.index.json, nor any *.safetensors in the directory)".into(),
        });
    }
    Ok(files)
}

/// Memory-mapped safetensors with canonical names; a candle `SimpleBackend`.
pub struct TensorStore {
    files: Vec<(PathBuf, MmapedSafetensors)>,
    /// canonical name -> (file index, key in that file)
    keys: HashMap<String, (usize, String)>,
}

impl TensorStore {
    pub fn open(files: &[PathBuf]) -> Result<Self> {
        let mut opened = Vec::with_capacity(files.len());
        let mut keys = HashMap::new();
        for (i, path) in files.iter().enumerate() {
            // SAFETY: the file is mapped read-only and must not change while the model is loaded,
            // as with every mmap-based loader; checkpoints are not written during a run.
            let st = unsafe { MmapedSafetensors::new(path) }
                .map_err(|e| ModelError::Checkpoint { path: path.clone(), message: e.to_string() })?;
            for (key, _) in st.tensors() {
                let canonical = layout::canonical_name(&key);
                if let Some((j, other)) = keys.insert(canonical.clone(), (i, key.clone())) {
                    return Err(ModelError::Checkpoint {
                        path: path.clone(),
                        message: format!("tensors {other} ({}) and {key} both map to {canonical}", files[j].display()),
                    });
                }
            }
            opened.push((path.clone(), st));
        }
        Ok(Self { files: opened, keys })
    }

    pub fn contains(&self, canonical: &str) -> bool {
        self.keys.contains_key(canonical)
    }

    fn file_list(&self) -> String {
        self.files.iter().map(|(p, _)| p.display().to_string()).collect::<Vec<_>>().join(", ")
    }

    fn load(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<(Tensor, &Path, &str)> {
        let (i, key) = self.keys.get(name).ok_or_else(|| {
            candle_core::Error::Msg(format!("tensor {name} not found in the checkpoint ({})", self.file_list()))
        })?;
        let (path, st) = &self.files[*i];
        let t = st.load(key, dev)?.to_dtype(dtype)?;
        Ok((t, path, key))
    }

    /// A `VarBuilder` over this store.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }
}

impl SimpleBackend for TensorStore {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let (t, path, key) = self.load(name, dtype, dev)?;
        if t.shape() != &s {
            return Err(candle_core::Error::Msg(format!(
                "tensor {key} in {} has shape {:?}, expected {:?}",
                path.display(),
                t.dims(),
                s.dims()
            )));
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name, dtype, dev).map(|(t, _, _)| t)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.contains(name)
    }
}
