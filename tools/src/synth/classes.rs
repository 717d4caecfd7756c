//! The classes of the synthetic dataset: an object kind doing a motion pattern, taken from
//! the object x motion grid so that neither factor alone names a class (module doc).

use anyhow::{ensure, Result};
use serde::Serialize;
use std::fmt;

use super::raster::{sd_box, sd_star5, sd_triangle};

/// The shape of a class's object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Disc,
    Square,
    Triangle,
    Ring,
    Cross,
    Star,
}

impl ObjectKind {
    /// In grid order: the first `n` are used when `n` kinds are needed.
    pub const ALL: [ObjectKind; 6] = [
        ObjectKind::Disc,
        ObjectKind::Square,
        ObjectKind::Triangle,
        ObjectKind::Ring,
        ObjectKind::Cross,
        ObjectKind::Star,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Disc => "disc",
            ObjectKind::Square => "square",
            ObjectKind::Triangle => "triangle",
            ObjectKind::Ring => "ring",
            ObjectKind::Cross => "cross",
            ObjectKind::Star => "star",
        }
    }

    /// Signed distance from `(x, y)` to the shape's edge, in units of its circumradius
    /// (negative inside): every shape fits in the unit circle.
    pub(super) fn sdf(self, x: f32, y: f32) -> f32 {
        match self {
            ObjectKind::Disc => (x * x + y * y).sqrt() - 1.0,
            ObjectKind::Square => sd_box(x, y, std::f32::consts::FRAC_1_SQRT_2, 0.70710677),
            ObjectKind::Triangle => sd_triangle(x, y),
            ObjectKind::Ring => ((x * x + y * y).sqrt() - 0.72).abs() - 0.28,
            ObjectKind::Cross => sd_box(x, y, 0.95, 0.3).min(sd_box(x, y, 0.3, 0.95)),
            ObjectKind::Star => sd_star5(x, y, 1.0, 0.45),
        }
    }
}

/// How a class's object moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Motion {
    /// Sinusoidal oscillation left and right.
    Horizontal,
    /// Sinusoidal oscillation up and down.
    Vertical,
    /// Turning in place.
    Spin,
    /// Circling a centre (without turning).
    Orbit,
    /// Growing and shrinking in place.
    Zoom,
    /// Straight diagonal lines, bouncing off the frame's edges.
    Bounce,
}

impl Motion {
    /// In grid order, like [`ObjectKind::ALL`].
    pub const ALL: [Motion; 6] = [
        Motion::Horizontal,
        Motion::Vertical,
        Motion::Spin,
        Motion::Orbit,
        Motion::Zoom,
        Motion::Bounce,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Motion::Horizontal => "horizontal",
            Motion::Vertical => "vertical",
            Motion::Spin => "spin",
            Motion::Orbit => "orbit",
            Motion::Zoom => "zoom",
            Motion::Bounce => "bounce",
        }
    }
}

/// One class: an object kind doing a motion; its name is `<object>_<motion>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ClassSpec {
    pub object: ObjectKind,
    pub motion: Motion,
}

impl fmt::Display for ClassSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.object.name(), self.motion.name())
    }
}

/// Most classes `synth` can make: every pair of the 6 object kinds and 6 motions.
pub const MAX_CLASSES: usize = 36;

/// The `count` classes, taken diagonal by diagonal from an `n x n` grid of the first `n`
/// object kinds and motions. `n` is the largest divisor of `count` in 2..=6 with
/// `count / n` between 2 and `n`, so each object and each motion is in `count / n` classes
/// and neither alone names a class (10 = 5 x 2, 20 = 5 x 4, 4 = 2 x 2, 12 = 6 x 2). Other
/// counts (7, 11...) take the smallest grid that holds them and fill the last diagonal
/// partly: balanced except for that diagonal.
pub fn classes(count: usize) -> Result<Vec<ClassSpec>> {
    classes_from(count, 0)
}

/// The `count` classes of [`classes`], starting `offset` diagonals further along the same
/// grid: with an offset of at least the diagonals `count` fills, no class is an object x
/// motion pair of the classes at offset 0, though every object and motion is (10 classes at
/// offset 2 are diagonals 2 and 3 of the 5x5 grid: `disc_spin`, `square_orbit`...). The
/// transfer probe's target classes (EXPERIMENTS.md).
pub fn classes_from(count: usize, offset: usize) -> Result<Vec<ClassSpec>> {
    ensure!(
        (2..=MAX_CLASSES).contains(&count),
        "{count} classes: synth makes 2 to {MAX_CLASSES} (6 object kinds x 6 motions)"
    );
    let balanced =
        (2..=6).rev().find(|&n| count.is_multiple_of(n) && (2..=n).contains(&(count / n)));
    let n = balanced
        .unwrap_or_else(|| (2..=6).find(|&n| n * n >= count).expect("count <= 36 fits 6 x 6"));
    let diagonals = count.div_ceil(n);
    ensure!(
        offset + diagonals <= n,
        "--diagonal-offset {offset}: {count} classes fill {diagonals} diagonals of a {n}x{n} \
         grid, so the offset can be at most {}",
        n - diagonals
    );
    Ok((0..count)
        .map(|c| {
            let (d, i) = (c / n + offset, c % n);
            ClassSpec { object: ObjectKind::ALL[i], motion: Motion::ALL[(i + d) % n] }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f32::consts::TAU;

    #[test]
    fn ten_classes_use_each_object_and_each_motion_twice() {
        let c = classes(10).unwrap();
        let names: Vec<String> = c.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "disc_horizontal",
                "square_vertical",
                "triangle_spin",
                "ring_orbit",
                "cross_zoom",
                "disc_vertical",
                "square_spin",
                "triangle_orbit",
                "ring_zoom",
                "cross_horizontal"
            ]
        );
        for n in [4, 10, 12, 20, 25, 36] {
            let c = classes(n).unwrap();
            let mut pairs: Vec<_> = c.iter().map(|s| (s.object.name(), s.motion.name())).collect();
            pairs.sort();
            pairs.dedup();
            assert_eq!(pairs.len(), n, "{n} classes must be distinct pairs");
            for o in c.iter().map(|s| s.object) {
                let k = c.iter().filter(|s| s.object == o).count();
                assert!(k >= 2, "{n} classes: {} in {k} class(es)", o.name());
            }
            for m in c.iter().map(|s| s.motion) {
                let k = c.iter().filter(|s| s.motion == m).count();
                assert!(k >= 2, "{n} classes: {} in {k} class(es)", m.name());
            }
        }
        assert!(classes(1).is_err() && classes(37).is_err());
        assert_eq!(classes(7).unwrap().len(), 7);
    }

    #[test]
    fn offset_classes_share_objects_and_motions_but_no_pair() {
        let seen = classes(10).unwrap();
        let unseen = classes_from(10, 2).unwrap();
        assert_eq!(unseen[0].to_string(), "disc_spin");
        assert_eq!(unseen[5].to_string(), "disc_orbit");
        for c in &unseen {
            assert!(!seen.contains(c), "{c} is also a class at offset 0");
            assert!(seen.iter().any(|s| s.object == c.object), "{c}: object never seen");
            assert!(seen.iter().any(|s| s.motion == c.motion), "{c}: motion never seen");
            assert_eq!(unseen.iter().filter(|u| u.object == c.object).count(), 2, "{c}");
            assert_eq!(unseen.iter().filter(|u| u.motion == c.motion).count(), 2, "{c}");
        }
        assert_eq!(classes_from(10, 0).unwrap(), seen);
        assert!(classes_from(10, 3).is_ok());
        let err = classes_from(10, 4).unwrap_err().to_string();
        assert!(err.contains("at most 3"), "{err}");
        assert!(classes_from(20, 2).is_err() && classes_from(20, 1).is_ok());
    }

    #[test]
    fn shapes_fit_the_unit_circle_and_fill_their_centre() {
        for o in ObjectKind::ALL {
            assert!(o.sdf(0.0, 0.0) < 0.0 || o == ObjectKind::Ring, "{o:?} centre");
            for i in 0..64 {
                let (s, c) = (i as f32 / 64.0 * TAU).sin_cos();
                assert!(o.sdf(1.02 * c, 1.02 * s) > 0.0, "{o:?} reaches past radius 1");
            }
        }
        assert!(ObjectKind::Ring.sdf(0.0, 0.0) > 0.0 && ObjectKind::Ring.sdf(0.72, 0.0) < 0.0);
    }
}
