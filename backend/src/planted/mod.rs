//! Models with a planted truth (issue 18): chest X-rays with a drawn finding and a drawn
//! shortcut marker, and tiny LLaVA models trained in candle to answer from exactly one cause,
//! so that the grounding and image-condition numbers can be checked against a known answer.
//!
//! - [`data`]: the seeded generator (blob, marker, sets, the study CSV).
//! - [`questions`]: the question templates, their negation and the text cue.
//! - [`model_dir`]: the tiny llava-hf directory every planted model is saved as.
//! - [`train`]: training through radlens' own `Llava` on `VarMap` weights, and evaluation.
//! - [`manifest`]: `MANIFEST.json` (hashes, seed, recipe, steps, accuracies).
//! - [`pairs`], [`gemma_dir`], [`train_multi`]: the multi-image models (issue 21): prior and
//!   current visits of one source with the nodule in either, both or neither, and tiny Gemma3
//!   models that answer the change question from both images or from the current image alone.

pub mod data;
pub mod gemma_dir;
pub mod manifest;
pub mod model_dir;
pub mod pairs;
pub mod questions;
pub mod train;
pub mod train_multi;
