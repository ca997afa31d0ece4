//! Inputs: image preprocessing and prompt construction, per model family.

pub mod clip_image;
pub mod llava;
pub mod tokenizer;
