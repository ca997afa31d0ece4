//! Several images per prompt (issue 21): each image's map on its own grid, as a record keeps
//! it, and the analysis' summary per image role.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CaseRecord, Summary, TensorRef};
use crate::fusion::MapProvenance;
use crate::metrics::MapMetrics;

/// One image of a multi-image prompt, as a record keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageMapRecord {
    /// `current`, `prior` or `lateral`.
    pub role: String,
    /// The image as the CSV names it (`image_path`, `prior_image_path`, `lateral_image_path`).
    pub image: String,
    /// This image's share of the fused attention mass on all the prompt's image tokens (the
    /// query rows' attention restricted to each image's token span, before the per-image
    /// renormalisation); the shares of a record's images sum to 1.
    pub image_mass_share: f64,
    /// How the map was made; `provenance.geometry` is this image's own grid and crop.
    pub provenance: MapProvenance,
    pub metrics: MapMetrics,
    /// The map over this image's tokens, renormalised to sum to 1, `[h, w]` f32.
    pub values: TensorRef,
    /// The other methods' maps of this image (Grad-CAM, occlusion, relative), each split
    /// between the images the same way; absent where none was asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<ImageMethodMap>,
}

/// One image's part of another method's map over a multi-image prompt (issue 21).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageMethodMap {
    /// This image's share of the method's whole map (Grad-CAM's positive mass, occlusion's
    /// answer drops, the relative map's mass) over all the prompt's images; the shares of one
    /// method over a record's images sum to 1.
    pub image_mass_share: f64,
    /// `provenance.method` names the method; `provenance.geometry` is this image's own grid.
    pub provenance: MapProvenance,
    pub metrics: MapMetrics,
    /// The method's map over this image, renormalised to sum to 1, `[h, w]` f32.
    pub values: TensorRef,
}

/// One image role's maps over a model's multi-image records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRoleSummary {
    pub records: usize,
    /// [`ImageMapRecord::image_mass_share`].
    pub mass_share: Option<Summary>,
    pub entropy_nats: Option<Summary>,
    pub focus: Option<Summary>,
    /// [`ImageMethodMap::image_mass_share`] per method (`gradcam`, `relative`, `occlusion`),
    /// over the records that have that method's maps; absent in runs without them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub methods: BTreeMap<String, Summary>,
}

impl CaseRecord {
    /// Every image file the record showed the model, as the CSV names them: its own image, a
    /// multi-image record's other images, and the prior a `prior_swap` record stood in. The
    /// server serves and the export copies exactly these.
    pub fn image_files(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.image)
            .chain(self.images.iter().map(|i| &i.image))
            .chain(self.condition.as_ref().and_then(|c| c.prior_image.as_ref()))
    }
}
