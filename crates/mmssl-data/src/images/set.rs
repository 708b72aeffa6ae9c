//! Labelled image collections and the pixel transforms of the image datasets.

use crate::error::{DataError, Result};

/// A labelled set of `u8` images, stored channel-major (`[n, channels, height, width]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    pixels: Vec<u8>,
    labels: Vec<u8>,
    channels: usize,
    height: usize,
    width: usize,
    source: String,
}

impl ImageSet {
    /// Wraps pixels (`n * channels * height * width`, channel-major per image) and `n` labels.
    pub fn new(
        pixels: Vec<u8>,
        labels: Vec<u8>,
        channels: usize,
        height: usize,
        width: usize,
        source: impl Into<String>,
    ) -> Result<Self> {
        let source = source.into();
        let per = channels * height * width;
        if per == 0 {
            return Err(DataError::format(
                &source,
                format!("image size {channels}x{height}x{width} is empty"),
            ));
        }
        if pixels.len() != per * labels.len() {
            return Err(DataError::Mismatch {
                what: format!(
                    "{source}: {} pixel values do not make {} images of {channels}x{height}x{width}",
                    pixels.len(),
                    labels.len()
                ),
            });
        }
        Ok(ImageSet {
            pixels,
            labels,
            channels,
            height,
            width,
            source,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Channels per image.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Image height.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Image width.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Where the images came from (a path or a description).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// All labels.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The pixels of image `i`, channel-major.
    pub fn image(&self, i: usize) -> &[u8] {
        let per = self.channels * self.height * self.width;
        &self.pixels[i * per..(i + 1) * per]
    }

    /// Number of images of each label `0..=max`.
    pub fn class_counts(&self) -> Vec<usize> {
        let classes = self
            .labels
            .iter()
            .map(|&l| l as usize + 1)
            .max()
            .unwrap_or(0);
        let mut counts = vec![0; classes];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// The images at `indices`, in that order (for splitting a set before pairing it).
    ///
    /// ```
    /// use mmssl_data::ImageSet;
    /// let set = ImageSet::new(vec![1, 2, 3], vec![0, 1, 2], 1, 1, 1, "three").unwrap();
    /// let picked = set.select(&[2, 0]).unwrap();
    /// assert_eq!(picked.labels(), &[2, 0]);
    /// assert_eq!(picked.image(0), &[3]);
    /// assert!(set.select(&[3]).is_err());
    /// ```
    pub fn select(&self, indices: &[usize]) -> Result<ImageSet> {
        let per = self.channels * self.height * self.width;
        let mut pixels = Vec::with_capacity(indices.len() * per);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= self.len() {
                return Err(DataError::OutOfRange {
                    index: i,
                    len: self.len(),
                });
            }
            pixels.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Ok(ImageSet {
            pixels,
            labels,
            channels: self.channels,
            height: self.height,
            width: self.width,
            source: self.source.clone(),
        })
    }

    /// The first `n` images (or all if fewer).
    pub fn truncate(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        let per = self.channels * self.height * self.width;
        self.pixels.truncate(n * per);
        self.labels.truncate(n);
        self
    }
}

/// An `f32` image `[channels, height, width]` under transformation.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Values, channel-major.
    pub data: Vec<f32>,
    /// Channels.
    pub channels: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
}

impl Image {
    /// From `u8` pixels, divided by 255.
    pub fn from_u8(pixels: &[u8], channels: usize, height: usize, width: usize) -> Self {
        Image {
            data: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
            channels,
            height,
            width,
        }
    }

    /// Per-image min-max scaling to `[0, 1]` (over all channels); a constant image becomes 0.
    pub fn min_max(mut self) -> Self {
        let (lo, hi) = self
            .data
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let span = hi - lo;
        for x in &mut self.data {
            *x = if span > 0.0 { (*x - lo) / span } else { 0.0 };
        }
        self
    }

    fn at(&self, c: usize, y: isize, x: isize) -> f32 {
        if y < 0 || x < 0 || y >= self.height as isize || x >= self.width as isize {
            0.0
        } else {
            self.data[(c * self.height + y as usize) * self.width + x as usize]
        }
    }

    /// Bilinear sample at continuous pixel coordinates (pixel centres at integers), 0 outside.
    fn sample(&self, c: usize, y: f32, x: f32) -> f32 {
        let (y0, x0) = (y.floor(), x.floor());
        let (dy, dx) = (y - y0, x - x0);
        let (y0, x0) = (y0 as isize, x0 as isize);
        let top = self.at(c, y0, x0) * (1.0 - dx) + self.at(c, y0, x0 + 1) * dx;
        let bottom = self.at(c, y0 + 1, x0) * (1.0 - dx) + self.at(c, y0 + 1, x0 + 1) * dx;
        top * (1.0 - dy) + bottom * dy
    }

    /// Bilinear resize with half-pixel centres (`align_corners = false`), edges clamped.
    pub fn resize(&self, height: usize, width: usize) -> Image {
        let sy = self.height as f32 / height as f32;
        let sx = self.width as f32 / width as f32;
        let mut data = Vec::with_capacity(self.channels * height * width);
        for c in 0..self.channels {
            for i in 0..height {
                let y = ((i as f32 + 0.5) * sy - 0.5).clamp(0.0, (self.height - 1) as f32);
                for j in 0..width {
                    let x = ((j as f32 + 0.5) * sx - 0.5).clamp(0.0, (self.width - 1) as f32);
                    data.push(self.sample(c, y, x));
                }
            }
        }
        Image {
            data,
            channels: self.channels,
            height,
            width,
        }
    }

    /// Rotation by `degrees` (counter-clockwise) about the image centre, bilinear, 0 outside.
    pub fn rotate(&self, degrees: f32) -> Image {
        let (s, c) = degrees.to_radians().sin_cos();
        let cy = (self.height as f32 - 1.0) / 2.0;
        let cx = (self.width as f32 - 1.0) / 2.0;
        let mut data = Vec::with_capacity(self.data.len());
        for ch in 0..self.channels {
            for i in 0..self.height {
                for j in 0..self.width {
                    // Inverse map: where in the source does output pixel (i, j) come from?
                    let (y, x) = (i as f32 - cy, j as f32 - cx);
                    let sx = c * x - s * y + cx;
                    let sy = s * x + c * y + cy;
                    data.push(self.sample(ch, sy, sx));
                }
            }
        }
        Image {
            data,
            channels: self.channels,
            height: self.height,
            width: self.width,
        }
    }
}
