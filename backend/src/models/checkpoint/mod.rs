//! Where weights come from: safetensors files (one, or sharded with an index), with every key
//! renamed to the canonical layout (see [`layout`]). The model code asks for canonical names
//! through a candle `VarBuilder` and never sees a release's own naming.

pub mod layout;
pub mod llava_rad;
pub mod lora;
pub mod pickle;
pub mod random;
pub mod redraw;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use candle_nn::var_builder::SimpleBackend;
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
        let parsed: Index = serde_json::from_str(&text).map_err(|e| ModelError::Config { file: index.clone(), message: e.to_string() })?;
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

/// Where one canonical tensor lives: in a memory-mapped safetensors file, or already in memory
/// (read from a pickle, or merged with a LoRA adapter).
enum Held {
    Mapped { file: usize, key: String },
    Loaded { file: usize, key: String, tensor: Tensor },
}

/// Tensors under canonical names; a candle `SimpleBackend`. Errors name the tensor and its file.
pub struct TensorStore {
    files: Vec<PathBuf>,
    mmaps: Vec<Option<MmapedSafetensors>>,
    keys: HashMap<String, Held>,
}

impl TensorStore {
    /// Memory-maps safetensors files, renaming every key to the LLaVA/Gemma3 canonical layout.
    pub fn open(files: &[PathBuf]) -> Result<Self> {
        let mut store = Self::empty();
        for path in files {
            store.add_safetensors(path, layout::canonical_name)?;
        }
        Ok(store)
    }

    pub fn empty() -> Self {
        Self { files: Vec::new(), mmaps: Vec::new(), keys: HashMap::new() }
    }

    fn add_file(&mut self, path: &Path, mmap: Option<MmapedSafetensors>) -> usize {
        self.files.push(path.to_path_buf());
        self.mmaps.push(mmap);
        self.files.len() - 1
    }

    fn insert(&mut self, canonical: String, held: Held) -> Result<()> {
        let (file, key) = match &held {
            Held::Mapped { file, key } | Held::Loaded { file, key, .. } => (*file, key.clone()),
        };
        if let Some(other) = self.keys.insert(canonical.clone(), held) {
            let (of, ok) = match &other {
                Held::Mapped { file, key } | Held::Loaded { file, key, .. } => (*file, key.clone()),
            };
            return Err(ModelError::Checkpoint {
                path: self.files[file].clone(),
                message: format!("tensors {ok} ({}) and {key} both map to {canonical}", self.files[of].display()),
            });
        }
        Ok(())
    }

    /// Memory-maps one safetensors file; `rename` gives each key its canonical name.
    pub fn add_safetensors(&mut self, path: &Path, rename: impl Fn(&str) -> String) -> Result<()> {
        // SAFETY: the file is mapped read-only and must not change while the model is loaded,
        // as with every mmap-based loader; checkpoints are not written during a run.
        let st = unsafe { MmapedSafetensors::new(path) }
            .map_err(|e| ModelError::Checkpoint { path: path.to_path_buf(), message: e.to_string() })?;
        let names: Vec<String> = st.tensors().into_iter().map(|(k, _)| k).collect();
        let file = self.add_file(path, Some(st));
        for key in names {
            self.insert(rename(&key), Held::Mapped { file, key })?;
        }
        Ok(())
    }

    /// Adds tensors already in memory, read from `path`, under canonical names.
    pub fn add_loaded(&mut self, path: &Path, tensors: Vec<(String, String, Tensor)>) -> Result<()> {
        let file = self.add_file(path, None);
        for (canonical, key, tensor) in tensors {
            self.insert(canonical, Held::Loaded { file, key, tensor })?;
        }
        Ok(())
    }

    /// Replaces a tensor's values (e.g. with a LoRA-merged weight), keeping where it came from.
    pub fn replace(&mut self, canonical: &str, tensor: Tensor) -> Result<()> {
        let (file, key) = match self.keys.get(canonical) {
            Some(Held::Mapped { file, key } | Held::Loaded { file, key, .. }) => (*file, key.clone()),
            None => return Err(ModelError::MissingTensor { key: canonical.to_string(), files: self.file_list() }),
        };
        self.keys.insert(canonical.to_string(), Held::Loaded { file, key, tensor });
        Ok(())
    }

    pub fn contains(&self, canonical: &str) -> bool {
        self.keys.contains_key(canonical)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.keys.keys()
    }

    fn file_list(&self) -> String {
        self.files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    }

    /// A tensor by canonical name, in its stored dtype, with the file and key it came from.
    pub fn load(&self, name: &str, dev: &Device) -> candle_core::Result<(Tensor, &Path, &str)> {
        let held = self
            .keys
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("tensor {name} not found in the checkpoint ({})", self.file_list())))?;
        match held {
            Held::Mapped { file, key } => {
                let st = self.mmaps[*file].as_ref().expect("mapped entries come from mapped files");
                Ok((st.load(key, dev)?, &self.files[*file], key))
            }
            Held::Loaded { file, key, tensor } => Ok((tensor.to_device(dev)?, &self.files[*file], key)),
        }
    }

    /// A `VarBuilder` over this store.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }
}

impl SimpleBackend for TensorStore {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let (t, path, key) = self.load(name, dev)?;
        if t.shape() != &s {
            return Err(candle_core::Error::Msg(format!(
                "tensor {key} in {} has shape {:?}, expected {:?}",
                path.display(),
                t.dims(),
                s.dims()
            )));
        }
        t.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name, dev)?.0.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.contains(name)
    }
}
