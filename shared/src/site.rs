//! Capture-site names: the probe's vocabulary, shared by the backend (where the sites are on the
//! forward path) and every stored map that names one (Grad-CAM's block, in its provenance).
//!
//! A site prints as its place in the model tree and parses back from it:
//! `text.blocks.12.attn.pattern`, `vision.blocks.22.output`, `vision.embeddings`. Stored as
//! that string, so run directories written before this type existed read unchanged.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::MetricError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tower {
    Vision,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Site {
    /// Post-softmax attention probabilities, `[heads, query, key]` (f32).
    AttnPattern,
    /// A block's output hidden states, `[positions, hidden]`.
    Output,
    /// The tower's embeddings (before block 0), `[positions, hidden]`; the layer is not part
    /// of the name (always 0).
    Embeddings,
}

/// A capture site: a tower, a block and a place in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SiteName {
    pub tower: Tower,
    pub layer: usize,
    pub site: Site,
}

impl SiteName {
    /// `text.blocks.{layer}.attn.pattern`: what the text maps are fused from.
    pub fn text_attn(layer: usize) -> Self {
        Self { tower: Tower::Text, layer, site: Site::AttnPattern }
    }

    pub fn vision_attn(layer: usize) -> Self {
        Self { tower: Tower::Vision, layer, site: Site::AttnPattern }
    }

    /// `vision.blocks.{layer}.output`.
    pub fn vision_output(layer: usize) -> Self {
        Self { tower: Tower::Vision, layer, site: Site::Output }
    }

    pub fn vision_embeddings() -> Self {
        Self { tower: Tower::Vision, layer: 0, site: Site::Embeddings }
    }
}

impl fmt::Display for SiteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tower = match self.tower {
            Tower::Vision => "vision",
            Tower::Text => "text",
        };
        match self.site {
            Site::AttnPattern => write!(f, "{tower}.blocks.{}.attn.pattern", self.layer),
            Site::Output => write!(f, "{tower}.blocks.{}.output", self.layer),
            Site::Embeddings => write!(f, "{tower}.embeddings"),
        }
    }
}

impl FromStr for SiteName {
    type Err = MetricError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            MetricError::Invalid(format!(
                "bad capture site {s:?}: expected e.g. text.blocks.12.attn.pattern, vision.blocks.3.output or vision.embeddings"
            ))
        };
        let (tower, rest) = s.split_once('.').ok_or_else(bad)?;
        let tower = match tower {
            "vision" => Tower::Vision,
            "text" => Tower::Text,
            _ => return Err(bad()),
        };
        if rest == "embeddings" {
            return Ok(Self { tower, layer: 0, site: Site::Embeddings });
        }
        let rest = rest.strip_prefix("blocks.").ok_or_else(bad)?;
        let (layer, site) = rest.split_once('.').ok_or_else(bad)?;
        let layer = layer.parse().map_err(|_| bad())?;
        let site = match site {
            "attn.pattern" => Site::AttnPattern,
            "output" => Site::Output,
            _ => return Err(bad()),
        };
        Ok(Self { tower, layer, site })
    }
}

impl TryFrom<String> for SiteName {
    type Error = MetricError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<SiteName> for String {
    fn from(s: SiteName) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_names_print_their_place_in_the_tree_and_parse_back() {
        for (site, text) in [
            (SiteName::text_attn(12), "text.blocks.12.attn.pattern"),
            (SiteName::vision_attn(0), "vision.blocks.0.attn.pattern"),
            (SiteName::vision_output(22), "vision.blocks.22.output"),
            (SiteName::vision_embeddings(), "vision.embeddings"),
        ] {
            assert_eq!(site.to_string(), text);
            assert_eq!(text.parse::<SiteName>().unwrap(), site);
            assert_eq!(serde_json::to_string(&site).unwrap(), format!("\"{text}\""));
        }
    }

    #[test]
    fn malformed_site_names_are_refused_with_the_name() {
        for bad in ["", "text", "audio.blocks.1.output", "text.blocks.x.output", "text.blocks.1.mlp", "vision.blocks.1"] {
            let err = bad.parse::<SiteName>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
