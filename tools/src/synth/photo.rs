//! Backgrounds cut from photographs (`synth --textures DIR`): the PNG images of a folder,
//! loaded once ([`Photos::load`]), and the random crop of one of them that becomes a
//! panning background texture in place of a procedural one.
//!
//! Flat procedural colours make colour the easiest cue by which CVRL matches two clips, so
//! the reference augmentation (colour jitter, grayscale 0.2) does not work on them; crops of
//! real photographs have the colour statistics of footage. `scripts/export-textures.py`
//! writes scikit-image's bundled sample photographs into such a folder.

use serde::ser::{Serialize, SerializeStruct, Serializer};
use std::fmt;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::rng::Rng;

/// Smallest side of an image accepted as a texture source, in pixels.
pub const MIN_PHOTO_SIDE: u32 = 16;
/// Largest side: the decoded images stay in memory as floats for the whole synthesis.
pub const MAX_PHOTO_SIDE: u32 = 8192;

/// Why a texture folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TextureError {
    #[error("cannot read texture folder {path}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("texture folder {0} holds no .png image")]
    Empty(PathBuf),
    #[error("cannot read texture image {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("texture image {path} is not a readable PNG")]
    Decode {
        path: PathBuf,
        #[source]
        source: png::DecodingError,
    },
    #[error("texture image {path} is {width}x{height}: each side must be {MIN_PHOTO_SIDE} to {MAX_PHOTO_SIDE} pixels")]
    Size { path: PathBuf, width: u32, height: u32 },
    #[error("texture image {path} has a file name that is not UTF-8")]
    Name { path: PathBuf },
}

/// One decoded image: row-major interleaved RGB in [0, 1].
struct Photo {
    name: String,
    width: usize,
    height: usize,
    rgb: Vec<f32>,
}

/// The images of a texture folder, sorted by file name so that a seed picks the same image
/// on every machine. Cheap to clone (shared).
#[derive(Clone)]
pub struct Photos {
    dir: PathBuf,
    images: Arc<Vec<Photo>>,
}

impl Photos {
    /// Decodes every `*.png` in `dir` (not its subfolders) to 8-bit RGB: grey images are
    /// spread over the three channels, alpha is dropped, 16-bit samples are cut to 8.
    pub fn load(dir: &Path) -> Result<Photos, TextureError> {
        let folder = |source| TextureError::Folder { path: dir.to_owned(), source };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(folder)? {
            let path = entry.map_err(folder)?.path();
            let png = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
            if png && path.is_file() {
                paths.push(path);
            }
        }
        if paths.is_empty() {
            return Err(TextureError::Empty(dir.to_owned()));
        }
        paths.sort();
        let images = paths.iter().map(|p| decode(p)).collect::<Result<Vec<_>, _>>()?;
        Ok(Photos { dir: dir.to_owned(), images: Arc::new(images) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The images' file names, in the order a seed indexes them.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.images.iter().map(|p| p.name.as_str())
    }

    /// A `w x h` texture cut from one of the images, all of whose random choices come from
    /// `rng`: the image, a flip, the zoom (the crop shows between 0.3 and all of the image's
    /// fitting width, so the frame holds a recognisable part of the scene) and the place.
    /// The crop is resampled by averaging a grid of bilinear samples over each texture
    /// pixel's footprint, so zooming out does not alias.
    pub(super) fn crop(&self, w: usize, h: usize, rng: &mut Rng) -> Vec<f32> {
        let photo = &self.images[rng.below(self.images.len())];
        let flip = rng.below(2) == 1;
        let fit = (photo.width as f32 / w as f32).min(photo.height as f32 / h as f32);
        let zoom = if fit > 1.0 { (fit * rng.range(0.3, 1.0)).max(1.0) } else { fit };
        let (cw, ch) = (w as f32 * zoom, h as f32 * zoom);
        let x0 = rng.range(0.0, (photo.width as f32 - cw).max(0.0));
        let y0 = rng.range(0.0, (photo.height as f32 - ch).max(0.0));
        let taps = zoom.ceil().max(1.0) as usize;
        let step = zoom / taps as f32;
        let mut rgb = Vec::with_capacity(w * h * 3);
        for ty in 0..h {
            for tx in 0..w {
                let tx = if flip { w - 1 - tx } else { tx };
                let mut acc = [0.0f32; 3];
                for j in 0..taps {
                    let sy = y0 + ty as f32 * zoom + (j as f32 + 0.5) * step;
                    for i in 0..taps {
                        let sx = x0 + tx as f32 * zoom + (i as f32 + 0.5) * step;
                        let c = photo.bilinear(sx, sy);
                        for k in 0..3 {
                            acc[k] += c[k];
                        }
                    }
                }
                let n = (taps * taps) as f32;
                rgb.extend(acc.map(|v| v / n));
            }
        }
        rgb
    }
}

impl Photo {
    /// The image at continuous coordinates (pixel centres at +0.5), clamped at the edges.
    fn bilinear(&self, x: f32, y: f32) -> [f32; 3] {
        let (w, h) = (self.width, self.height);
        let (fx, fy) = ((x - 0.5).clamp(0.0, (w - 1) as f32), (y - 0.5).clamp(0.0, (h - 1) as f32));
        let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
        let (ax, ay) = (fx - x0 as f32, fy - y0 as f32);
        let px = |x: usize, y: usize| {
            let i = (y * w + x) * 3;
            [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
        };
        let (a, b, c, d) = (px(x0, y0), px(x1, y0), px(x0, y1), px(x1, y1));
        std::array::from_fn(|k| {
            let top = a[k] + (b[k] - a[k]) * ax;
            let bottom = c[k] + (d[k] - c[k]) * ax;
            top + (bottom - top) * ay
        })
    }
}

fn decode(path: &Path) -> Result<Photo, TextureError> {
    let read = |source| TextureError::Read { path: path.to_owned(), source };
    let bad = |source| TextureError::Decode { path: path.to_owned(), source };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| TextureError::Name { path: path.to_owned() })?
        .to_owned();
    let file = std::fs::File::open(path).map_err(read)?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(bad)?;
    let (width, height) = reader.info().size();
    let sides = MIN_PHOTO_SIDE..=MAX_PHOTO_SIDE;
    if !sides.contains(&width) || !sides.contains(&height) {
        return Err(TextureError::Size { path: path.to_owned(), width, height });
    }
    let size = reader.output_buffer_size().ok_or(TextureError::Size {
        path: path.to_owned(),
        width,
        height,
    })?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).map_err(bad)?;
    let channels = info.color_type.samples();
    let rgb = buf[..info.buffer_size()]
        .chunks_exact(info.line_size)
        .flat_map(|row| row[..width as usize * channels].chunks_exact(channels))
        .flat_map(|px| {
            // Grey (and grey + alpha) spread over RGB; colour keeps its first three.
            let rgb = if channels < 3 { [px[0]; 3] } else { [px[0], px[1], px[2]] };
            rgb.map(|v| f32::from(v) / 255.0)
        })
        .collect();
    Ok(Photo { name, width: width as usize, height: height as usize, rgb })
}

impl fmt::Debug for Photos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Photos")
            .field("dir", &self.dir)
            .field("images", &self.names().collect::<Vec<_>>())
            .finish()
    }
}

/// Two sets are the same when they name the same folder and files (what `synth.json`
/// records); the pixels are not compared.
impl PartialEq for Photos {
    fn eq(&self, other: &Photos) -> bool {
        self.dir == other.dir && self.names().eq(other.names())
    }
}

/// In `synth.json`: the folder and the files, in the order a seed indexes them.
impl Serialize for Photos {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Photos", 2)?;
        st.serialize_field("dir", &self.dir)?;
        st.serialize_field("images", &self.names().collect::<Vec<_>>())?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a `w x h` 8-bit RGB PNG whose pixel (x, y) is `f(x, y)`.
    fn write_png(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) {
        let file = std::fs::File::create(path).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let f = &f;
        let data: Vec<u8> = (0..h).flat_map(|y| (0..w).flat_map(move |x| f(x, y))).collect();
        enc.write_header().unwrap().write_image_data(&data).unwrap();
    }

    #[test]
    fn a_crop_of_a_gradient_is_a_gradient_of_the_image_s_colours() {
        let dir = tempfile::tempdir().unwrap();
        // Red rises with x, green with y, blue constant: a crop keeps blue and orders red
        // along rows and green along columns (reversed for red when flipped).
        write_png(&dir.path().join("g.png"), 256, 200, |x, y| [x as u8, y as u8, 64]);
        let photos = Photos::load(dir.path()).unwrap();
        let (w, h) = (40, 30);
        let mut flips = [0, 0];
        for seed in 0..16 {
            let t = photos.crop(w, h, &mut Rng::new(seed));
            let at = |x: usize, y: usize, k: usize| t[(y * w + x) * 3 + k];
            assert!(t.chunks_exact(3).all(|p| (p[2] - 64.0 / 255.0).abs() < 1e-5), "{seed}");
            let (left, right) = (at(0, 10, 0), at(w - 1, 10, 0));
            flips[usize::from(left > right)] += 1;
            for y in 0..h {
                for x in 1..w {
                    let step = at(x, y, 0) - at(x - 1, y, 0);
                    assert!(step.abs() > 0.0 && step.signum() == (right - left).signum());
                }
            }
            for y in 1..h {
                assert!(at(5, y, 1) > at(5, y - 1, 1), "{seed}: green must rise down a column");
            }
            // The crop spans at least 0.3 of the image's fitting zoom (256/40 pixels a texel).
            assert!((right - left).abs() * 255.0 >= 0.3 * (256.0 / 40.0) * (w - 1) as f32 - 1.0);
        }
        assert!(flips[0] > 0 && flips[1] > 0, "flips {flips:?}");
        assert_eq!(photos.crop(w, h, &mut Rng::new(3)), photos.crop(w, h, &mut Rng::new(3)));
    }

    #[test]
    fn photos_replace_the_background_and_nothing_else() {
        use crate::synth::{classes, Canvas, SynthConfig, VideoPlan};
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("g.png"), 300, 240, |x, y| [(x / 2) as u8, y as u8, 64]);
        let plain = SynthConfig {
            classes: 4,
            width: 64,
            height: 64,
            min_seconds: 2.0,
            max_seconds: 2.0,
            clutter: 0.0,
            ..SynthConfig::cpu()
        };
        let photo =
            SynthConfig { textures: Some(Photos::load(dir.path()).unwrap()), ..plain.clone() };
        let blue_share = |plan: &VideoPlan, k: u32| {
            let mut c = Canvas::new(64, 64);
            plan.render(k, &mut c);
            let r = plan.object_box(k);
            let outside: Vec<u32> = (0..64 * 64)
                .filter(|i| !(r.x0..r.x1).contains(&(i % 64)) || !(r.y0..r.y1).contains(&(i / 64)))
                .collect();
            let blue_at = |i: u32| c.rgb[i as usize * 3 + 2];
            let blue = outside.iter().filter(|&&i| (blue_at(i) - 64.0 / 255.0).abs() < 1e-4);
            blue.count() as f32 / outside.len() as f32
        };
        for (c, class) in classes(4).unwrap().into_iter().enumerate() {
            let (a, b) = (VideoPlan::new(&plain, class, c, 0), VideoPlan::new(&photo, class, c, 0));
            assert_eq!((a.frames, a.factors()), (b.frames, b.factors()), "{class}");
            for k in [0, 25, 49] {
                assert_eq!(a.pose(k), b.pose(k), "{class} frame {k}: the photo moved the object");
                // Every background pixel is a blend of the image's pixels, whose blue is 64.
                assert_eq!(blue_share(&b, k), 1.0, "{class} frame {k}");
                assert!(blue_share(&a, k) < 0.05, "{class} frame {k}: procedural has blue 64");
            }
        }
    }

    #[test]
    fn grey_and_alpha_images_load_as_rgb_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grey.png");
        let file = std::fs::File::create(&path).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), 16, 16);
        enc.set_color(png::ColorType::GrayscaleAlpha);
        let data: Vec<u8> = (0..256).flat_map(|i| [i as u8, 255]).collect();
        enc.write_header().unwrap().write_image_data(&data).unwrap();
        let photos = Photos::load(dir.path()).unwrap();
        let p = &photos.images[0];
        assert_eq!((p.width, p.height, p.rgb.len()), (16, 16, 16 * 16 * 3));
        assert_eq!(&p.rgb[3 * 17..3 * 18], &[17.0 / 255.0; 3]);

        std::fs::write(dir.path().join("broken.png"), b"not a png").unwrap();
        let err = format!("{:#}", anyhow::Error::from(Photos::load(dir.path()).unwrap_err()));
        assert!(err.contains("broken.png") && err.contains("not a readable PNG"), "{err}");
        std::fs::remove_file(dir.path().join("broken.png")).unwrap();
        write_png(&dir.path().join("tiny.png"), 8, 64, |_, _| [0; 3]);
        let err = Photos::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("tiny.png") && err.contains("8x64"), "{err}");

        let empty = tempfile::tempdir().unwrap();
        let err = Photos::load(empty.path()).unwrap_err().to_string();
        assert!(err.contains("holds no .png image"), "{err}");
        let err = Photos::load(&empty.path().join("missing")).unwrap_err().to_string();
        assert!(err.contains("cannot read texture folder"), "{err}");
    }
}
