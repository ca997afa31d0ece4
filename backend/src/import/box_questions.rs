//! What the box importers share: boxes from a source -> one merged radiologist box per (image,
//! finding) -> a template question per finding ("Is there a pleural effusion in this chest
//! X-ray?", truth yes, the box as `roi_*`), plus negatives where the source says an image has
//! no finding.
//!
//! Boxes are given in the source's pixel space (NIH: the 1024 x 1024 originals; MS-CXR: its
//! `image_width` x `image_height`) and scaled to the size of the image actually found under
//! `--images` (the bundled demo images are 512 x 512). A box outside its pixel space is an error
//! naming the file and line; an image that is not there drops its rows (counted).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use radlens_shared::answer::Answer;
use radlens_shared::geometry::PixelBox;
use radlens_shared::variants::lexicon::finding_phrase;

use super::images::ImageIndex;
use super::writer::{OutRow, StudyWriter, number, xywh};
use super::{ImportError, ImportOptions, Summary};

/// One box row of a source.
#[derive(Debug, Clone)]
pub struct SourceBox {
    /// The CSV line it came from (the header is line 1).
    pub line: u64,
    pub image_id: String,
    /// Where the image may be under `--images`, in order of preference.
    pub image_candidates: Vec<String>,
    /// The finding as the source spells it ("Effusion", "Nodule/Mass").
    pub label: String,
    /// Who drew it (VinDr's `rad_id`), when the source says.
    pub reader: Option<String>,
    /// `x, y, w, h` in the source's pixel space.
    pub xywh: [f64; 4],
    /// The source's pixel space; `None` means the image's own pixels.
    pub space: Option<(f64, f64)>,
    /// Text that goes with the box (MS-CXR's phrase).
    pub phrase: Option<String>,
}

/// How the boxes of one (image, finding) become its `roi_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeRule {
    /// The enclosing box of every box (one reader, or several boxes of one reader).
    Enclosing,
    /// The finding counts only if more than half of the image's readers boxed it; `roi_*` is
    /// then the enclosing box of all their boxes of that finding.
    MajorityEnclosing,
}

/// A box source read into memory (box lists are small: NIH's has 984 rows, VinDr's ~36k).
pub struct BoxSet {
    pub file: PathBuf,
    pub boxes: Vec<SourceBox>,
    pub merge: MergeRule,
    /// Every reader of each image (the majority rule's denominator), "No finding" readers too.
    pub readers: HashMap<String, BTreeSet<String>>,
    /// Images the source marks as having no finding, with the candidates for their file.
    pub negatives: Vec<(String, Vec<String>)>,
    /// How many negatives per finding (relative to its positives); 0 makes none.
    pub negatives_per_positive: usize,
}

/// One (image, finding) with its merged box.
#[derive(Debug, Clone)]
pub struct MergedBox {
    pub image_id: String,
    pub image: String,
    pub label: String,
    pub roi: PixelBox,
    /// Every box (scaled), as `reader:x,y,w,h` joined by `;`.
    pub all_boxes: String,
    pub readers: String,
    pub lines: String,
    pub phrases: String,
}

/// The `finding` column value: the label lower-cased.
pub fn finding_key(label: &str) -> String {
    label.trim().to_lowercase()
}

fn slug(text: &str) -> String {
    // Underscores stay: NIH ids read "00001369_000".
    let s: String = text.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' }).collect();
    s.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-")
}

/// The template question about `label`.
pub fn template_question(label: &str) -> String {
    format!("Is there {} in this chest X-ray?", finding_phrase(label))
}

/// Scales every box to its image, checks it lies inside, and merges each (image, finding).
/// Rows whose image is missing, and findings the merge rule rejects, are counted in `summary`.
pub fn merge(set: &BoxSet, images: &mut ImageIndex, summary: &mut Summary) -> Result<Vec<MergedBox>, ImportError> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut groups: HashMap<(String, String), Vec<&SourceBox>> = HashMap::new();
    for b in &set.boxes {
        let key = (b.image_id.clone(), finding_key(&b.label));
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(b);
    }
    let mut scales: BTreeMap<String, usize> = BTreeMap::new();
    let mut merged = Vec::new();
    for key in order {
        let boxes = &groups[&key];
        let Some(image) = images.find(&boxes[0].image_candidates) else {
            for _ in boxes {
                summary.drop(super::IMAGE_MISSING);
            }
            continue;
        };
        let (w, h) = images.size(&image).expect("found images have a size");
        let mut scaled = Vec::new();
        for b in boxes {
            let [x, y, bw, bh] = b.xywh;
            let (sw, sh) = b.space.unwrap_or((f64::from(w), f64::from(h)));
            let outside = |x: f64, y: f64, bw: f64, bh: f64, sw: f64, sh: f64| {
                // Half a pixel of slack: sources round their corners to the pixel grid.
                x < -0.5 || y < -0.5 || x + bw > sw + 0.5 || y + bh > sh + 0.5 || bw <= 0.0 || bh <= 0.0
            };
            if outside(x, y, bw, bh, sw, sh) {
                return Err(ImportError::BoxOutside {
                    path: set.file.clone(),
                    line: b.line,
                    x,
                    y,
                    w: bw,
                    h: bh,
                    width: sw.round() as u32,
                    height: sh.round() as u32,
                    image: image.clone(),
                });
            }
            let (fx, fy) = (f64::from(w) / sw, f64::from(h) / sh);
            if b.space.is_some() {
                *scales.entry(format!("{}x{} -> {w}x{h}", number(sw), number(sh))).or_insert(0) += 1;
            }
            let clamp = |v: f64, hi: f64| v.clamp(0.0, hi);
            let (x0, y0) = (clamp(x * fx, f64::from(w)), clamp(y * fy, f64::from(h)));
            let (x1, y1) = (clamp((x + bw) * fx, f64::from(w)), clamp((y + bh) * fy, f64::from(h)));
            let pb = PixelBox::new(x0, y0, x1, y1).map_err(|e| ImportError::Line {
                path: set.file.clone(),
                line: b.line,
                message: e.to_string(),
            })?;
            scaled.push((*b, pb));
        }
        let image_readers = set.readers.get(&key.0).map_or(0, BTreeSet::len);
        let boxed_by: BTreeSet<&str> = scaled.iter().filter_map(|(b, _)| b.reader.as_deref()).collect();
        if set.merge == MergeRule::MajorityEnclosing && boxed_by.len() * 2 <= image_readers {
            for _ in boxes {
                summary.drop("finding boxed by half of the image's radiologists or fewer (majority rule)");
            }
            continue;
        }
        let roi = scaled.iter().skip(1).fold(scaled[0].1, |a, (_, b)| PixelBox {
            x0: a.x0.min(b.x0),
            y0: a.y0.min(b.y0),
            x1: a.x1.max(b.x1),
            y1: a.y1.max(b.y1),
        });
        let join = |f: &dyn Fn(&(&SourceBox, PixelBox)) -> Option<String>| scaled.iter().filter_map(f).collect::<Vec<_>>().join(";");
        let readers = if image_readers > 0 { format!("{}/{}", boxed_by.len(), image_readers) } else { String::new() };
        merged.push(MergedBox {
            image_id: key.0.clone(),
            image,
            label: boxes[0].label.trim().to_string(),
            roi,
            all_boxes: join(&|(b, pb)| Some(format!("{}:{}", b.reader.as_deref().unwrap_or("box"), xywh(pb)))),
            readers,
            lines: join(&|(b, _)| Some(b.line.to_string())),
            phrases: join(&|(b, _)| b.phrase.clone()),
        });
    }
    for (scale, n) in scales {
        summary.notes.push(format!("{n} box(es) scaled from the source's pixel space to the image found: {scale}"));
    }
    Ok(merged)
}

/// The extra columns of a box set: the source's image id and finding label, every box that was
/// merged (`reader:x,y,w,h;...`, scaled to the image), how many readers boxed the finding of
/// how many who read the image, the source lines, and the phrases (MS-CXR).
pub const BOX_EXTRAS: [&str; 6] = ["source_image_id", "source_finding", "source_boxes", "source_readers", "source_lines", "source_phrases"];

/// Writes the template questions: one positive study per merged box, then the negatives.
pub fn write_questions(set: &BoxSet, opts: &ImportOptions, out: &Path) -> Result<Summary, ImportError> {
    write_questions_with(set, &[], opts, out)
}

/// A negative the source names: (image id, where its file may be, finding label).
pub type NamedNegative = (String, Vec<String>, String);

/// [`write_questions`] plus negatives the source names one by one, written after the positives.
pub fn write_questions_with(set: &BoxSet, explicit: &[NamedNegative], opts: &ImportOptions, out: &Path) -> Result<Summary, ImportError> {
    let mut images = ImageIndex::new(&opts.images)?;
    let mut summary = Summary::default();
    let merged = merge(set, &mut images, &mut summary)?;
    let extras = BOX_EXTRAS;
    let mut writer = StudyWriter::create(out, &extras)?;
    let mut rows: Vec<OutRow> = Vec::new();
    let mut positives: Vec<(String, String, usize)> = Vec::new();
    for m in &merged {
        let finding = finding_key(&m.label);
        match positives.iter_mut().find(|(f, _, _)| *f == finding) {
            Some(p) => p.2 += 1,
            None => positives.push((finding.clone(), m.label.clone(), 1)),
        }
        let mut row = OutRow::base(
            format!("{}-{}", slug(stem(&m.image_id)), slug(&finding)),
            m.image.clone(),
            template_question(&m.label),
            Answer::Yes,
        );
        row.finding = Some(finding);
        row.roi = Some(m.roi);
        row.extras = vec![
            (extras[0], m.image_id.clone()),
            (extras[1], m.label.clone()),
            (extras[2], m.all_boxes.clone()),
            (extras[3], m.readers.clone()),
            (extras[4], m.lines.clone()),
            (extras[5], m.phrases.clone()),
        ];
        rows.push(row);
    }
    for (id, candidates, label) in explicit {
        let Some(image) = images.find(candidates) else {
            summary.drop(super::IMAGE_MISSING);
            continue;
        };
        let finding = finding_key(label);
        let mut row = OutRow::base(format!("{}-{}", slug(stem(id)), slug(&finding)), image, template_question(label), Answer::No);
        row.finding = Some(finding);
        row.extras = vec![(extras[0], id.clone()), (extras[1], label.trim().to_string())];
        rows.push(row);
    }
    // Negatives: images the source calls normal, as many per finding as it has positives
    // (times negatives_per_positive), taken in file order and continuing where the last
    // finding stopped, so different findings ask different normal images.
    let mut available: Vec<(String, String)> = Vec::new();
    for (id, candidates) in &set.negatives {
        match images.find(candidates) {
            Some(image) => available.push((id.clone(), image)),
            None => summary.drop("image marked no finding not found under --images"),
        }
    }
    let mut cursor = 0;
    for (finding, label, n) in &positives {
        let want = (n * set.negatives_per_positive).min(available.len());
        for _ in 0..want {
            let (id, image) = &available[cursor % available.len()];
            cursor += 1;
            let mut row =
                OutRow::base(format!("{}-{}", slug(stem(id)), slug(finding)), image.clone(), template_question(label), Answer::No);
            row.finding = Some(finding.clone());
            row.extras = vec![(extras[0], id.clone()), (extras[1], label.clone())];
            rows.push(row);
        }
    }
    for row in rows {
        if super::at_limit(opts, summary.studies) {
            break;
        }
        writer.write(&row)?;
        summary.rows += 1;
        summary.studies += 1;
    }
    writer.finish()?;
    Ok(summary)
}

/// An image id without a file extension ("00001369_000.png" -> "00001369_000").
pub fn stem(id: &str) -> &str {
    let file = id.rsplit('/').next().unwrap_or(id);
    match file.rsplit_once('.') {
        Some((s, ext)) if ["png", "jpg", "jpeg", "dcm", "dicom"].contains(&ext.to_ascii_lowercase().as_str()) => s,
        _ => file,
    }
}

/// Where an image named by `id` may be: as given, then with each extension.
pub fn candidates_for(id: &str) -> Vec<String> {
    let mut c = vec![id.to_string()];
    let s = stem(id);
    c.extend(["png", "jpg", "jpeg"].iter().map(|ext| format!("{s}.{ext}")));
    c.dedup();
    c
}

/// A CSV cell as a number, or an error naming the file, line and column.
pub fn parse_number(file: &Path, line: u64, column: &str, text: &str) -> Result<f64, ImportError> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| ImportError::Line {
        path: file.to_path_buf(),
        line,
        message: format!("{column} {text:?} is not a number"),
    })
}

/// The CSV line of a record (the header is line 1).
pub fn line_of(record: &csv::StringRecord) -> u64 {
    record.position().map_or(0, |p| p.line())
}

/// The header's position of `name` (trimmed, case-insensitive), or a missing-column error.
pub fn column(file: &Path, headers: &csv::StringRecord, name: &str) -> Result<usize, ImportError> {
    headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name)).ok_or_else(|| ImportError::MissingColumn {
        path: file.to_path_buf(),
        column: name.to_string(),
        found: headers.iter().collect::<Vec<_>>().join(", "),
    })
}

/// Opens a CSV with record positions (for line numbers) and returns its header.
pub fn open_csv(file: &Path) -> Result<(csv::Reader<std::fs::File>, csv::StringRecord), ImportError> {
    let f = std::fs::File::open(file).map_err(|source| ImportError::Read { path: file.to_path_buf(), source })?;
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(f);
    let headers = reader.headers().map_err(|e| csv_error(file, &e))?.clone();
    Ok((reader, headers))
}

pub fn csv_error(file: &Path, e: &csv::Error) -> ImportError {
    ImportError::Line { path: file.to_path_buf(), line: e.position().map_or(0, |p| p.line()), message: e.to_string() }
}
