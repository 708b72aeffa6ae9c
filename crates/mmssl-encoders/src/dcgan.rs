//! The DCGAN encoder and decoder (Radford et al., ICLR 2016) as used by Fedorov et al.
//! (ISBI 2021): one definition, a table of layers, builds the 2D models for 32x32 images and
//! the 3D models for 64^3 volumes.

use crate::init::{leaky_relu_gain, xavier_conv};
use crate::variant::{BASE_WIDTH, EncoderOptions};
use crate::{EncoderError, EncoderOutput, LEAKY_SLOPE};
use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use mmssl_kernels::nn::{Act, Conv, ConvTranspose, NormAct, NormActConfig};
use mmssl_kernels::norm::{Activation, RunningVariance};
use rand::Rng;

/// Output channels of a layer in a [`Layer`] table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    /// A number at the paper's width ([`BASE_WIDTH`], 32); a model of another width scales
    /// it (`Fixed(64)` is 16 channels at width 8).
    Fixed(usize),
    /// The model's outer size: the latent size for an encoder's last layer, the data's
    /// channels for a decoder's last layer.
    Outer,
}

/// One layer of a DCGAN table: a 4^n convolution (transposed in a decoder) without bias,
/// optionally followed by batch norm and LeakyReLU(0.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layer {
    /// Output channels.
    pub channels: Channels,
    /// Stride along every axis.
    pub stride: usize,
    /// Padding on both sides of every axis.
    pub padding: usize,
    /// Batch norm after the convolution.
    pub norm: bool,
    /// LeakyReLU(0.2) after the convolution (or its batch norm).
    pub act: bool,
    /// Xavier gain of the weights: LeakyReLU(0.2)'s gain (`true`) or 1.
    pub leaky_gain: bool,
}

/// Kernel size along every axis.
pub const KERNEL: usize = 4;

const fn layer(channels: usize, stride: usize, padding: usize, norm: bool) -> Layer {
    Layer {
        channels: Channels::Fixed(channels),
        stride,
        padding,
        norm,
        act: true,
        leaky_gain: true,
    }
}

/// The last layer: from a 4^n map to the latent (encoder) or to the data (decoder), without
/// normalisation or activation.
const fn last(stride: usize, padding: usize, leaky_gain: bool) -> Layer {
    Layer {
        channels: Channels::Outer,
        stride,
        padding,
        norm: false,
        act: false,
        leaky_gain,
    }
}

/// The 2D encoder: `C x 32^2 -> 32 x 16^2 -> 64 x 8^2 (tapped) -> 128 x 4^2 -> latent x 1^2`.
pub const ENCODER_2D: &[Layer] = &[
    layer(32, 2, 1, false),
    layer(64, 2, 1, true),
    layer(128, 2, 1, true),
    last(1, 0, true),
];
/// The layer of [`ENCODER_2D`] whose raw convolution output is tapped.
pub const TAP_2D: usize = 1;

/// The 3D encoder: `C x 64^3 -> 32 x 32^3 -> 64 x 16^3 -> 128 x 8^3 (tapped) -> 256 x 4^3 ->
/// latent x 1^3`.
pub const ENCODER_3D: &[Layer] = &[
    layer(32, 2, 1, false),
    layer(64, 2, 1, true),
    layer(128, 2, 1, true),
    layer(256, 2, 1, true),
    last(1, 0, true),
];
/// The layer of [`ENCODER_3D`] whose raw convolution output is tapped.
pub const TAP_3D: usize = 2;

/// The 2D decoder: `latent x 1^2 -> 128 x 4^2 -> 64 x 8^2 -> 32 x 16^2 -> C x 32^2`.
pub const DECODER_2D: &[Layer] = &[
    layer(128, 1, 0, true),
    layer(64, 2, 1, true),
    layer(32, 2, 1, true),
    last(2, 1, false),
];

/// The 3D decoder: `latent x 1^3 -> 256 x 4^3 -> 128 x 8^3 -> 64 x 16^3 -> 32 x 32^3 ->
/// C x 64^3`.
pub const DECODER_3D: &[Layer] = &[
    layer(256, 1, 0, true),
    layer(128, 2, 1, true),
    layer(64, 2, 1, true),
    layer(32, 2, 1, true),
    last(2, 1, false),
];

/// Batch norm and activation after a convolution, as the table says.
#[derive(Module, Debug)]
pub struct Post {
    pub(crate) norm: Option<NormAct>,
    act: Option<Act>,
}

impl Post {
    fn new(spec: &Layer, channels: usize, running: RunningVariance, device: &Device) -> Self {
        let leaky = Activation::LeakyRelu(LEAKY_SLOPE);
        let activation = if spec.act {
            leaky
        } else {
            Activation::Identity
        };
        Post {
            norm: spec.norm.then(|| {
                NormActConfig::new(channels, activation)
                    .with_running(running)
                    .init(device)
            }),
            act: (spec.act && !spec.norm).then(|| Act::new(leaky)),
        }
    }

    /// Whether a batch norm follows the convolution.
    pub fn has_norm(&self) -> bool {
        self.norm.is_some()
    }

    fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match (&self.norm, &self.act) {
            (Some(norm), _) => norm.forward(x),
            (None, Some(act)) => act.forward(x),
            (None, None) => x,
        }
    }
}

/// The layers of `table` and their batch norm and activation, for `sizes`: (name, value) of the
/// first layer's input channels and of the model's outer size ([`Channels::Outer`]), both
/// checked positive, at `options`' width, the batch norms' running variance as its variant says. Weights are Xavier-uniform, drawn from `rng` layer by layer, `[C_out,
/// C_in, k...]` (`[C_in, C_out, k...]` when `transposed`, as transposed convolutions store
/// them); `layer(weight, stride, padding)` makes each layer.
fn build<const D: usize, L, R: Rng + ?Sized>(
    table: &[Layer],
    sizes: [(&'static str, usize); 2],
    options: &EncoderOptions,
    transposed: bool,
    device: &Device,
    rng: &mut R,
    layer: impl Fn(Param<Tensor<D>>, usize, usize) -> L,
) -> Result<(Vec<L>, Vec<Post>), EncoderError> {
    assert!(
        D == 4 || D == 5,
        "DCGAN models are 2D (rank 4) or 3D (rank 5)"
    );
    for (name, value) in sizes {
        EncoderError::check_positive(name, value)?;
    }
    EncoderError::check_positive("width", options.width)?;
    let running = options.variant.running_variance();
    let (mut layers, mut posts) = (Vec::new(), Vec::new());
    let mut c_in = sizes[0].1;
    for spec in table {
        let c_out = match spec.channels {
            Channels::Fixed(c) => (c * options.width).div_ceil(BASE_WIDTH),
            Channels::Outer => sizes[1].1,
        };
        let gain = if spec.leaky_gain {
            leaky_relu_gain(LEAKY_SLOPE)
        } else {
            1.0
        };
        let shape = if transposed {
            kernel_shape::<D>(c_in, c_out)
        } else {
            kernel_shape::<D>(c_out, c_in)
        };
        let weight = xavier_conv(shape, gain, rng, device);
        layers.push(layer(weight, spec.stride, spec.padding));
        posts.push(Post::new(spec, c_out, running, device));
        c_in = c_out;
    }
    Ok((layers, posts))
}

/// A weight shape `[a, b, 4, 4(, 4)]` of rank `D`.
fn kernel_shape<const D: usize>(a: usize, b: usize) -> [usize; D] {
    let mut shape = [KERNEL; D];
    shape[0] = a;
    shape[1] = b;
    shape
}

/// The DCGAN encoder of rank `D` (`D = 4`: images `[B, C, 32, 32]`, see [`DcganEncoder2d`];
/// `D = 5`: volumes `[B, C, 64, 64, 64]`, see [`DcganEncoder3d`]), built from a [`Layer`]
/// table. It returns the raw output of the tapped convolution as a feature map and the last
/// convolution's output as the latent `z`.
#[derive(Module, Debug)]
pub struct DcganEncoder<const D: usize> {
    pub(crate) convs: Vec<Conv<D>>,
    pub(crate) posts: Vec<Post>,
    /// Index of the tapped layer.
    pub(crate) tap: usize,
}

/// The 2D DCGAN encoder for `[B, C, 32, 32]` images ([`ENCODER_2D`]): feature map
/// `[B, 64, 64]` (64 channels x 8^2), latent `[B, latent_dim]`.
pub type DcganEncoder2d = DcganEncoder<4>;
/// The 3D DCGAN encoder for `[B, C, 64, 64, 64]` volumes ([`ENCODER_3D`]): feature map
/// `[B, 128, 512]` (128 channels x 8^3), latent `[B, latent_dim]`.
pub type DcganEncoder3d = DcganEncoder<5>;

impl<const D: usize> DcganEncoder<D> {
    /// Builds the encoder of `table` (tapping layer `tap`) for `in_channels` input channels and
    /// a `latent_dim` latent, drawing the weights from `rng` layer by layer (Xavier-uniform).
    pub fn from_table<R: Rng + ?Sized>(
        table: &[Layer],
        tap: usize,
        in_channels: usize,
        latent_dim: usize,
        device: &Device,
        rng: &mut R,
    ) -> Result<Self, EncoderError> {
        let options = EncoderOptions::default();
        Self::from_table_with(table, tap, in_channels, latent_dim, &options, device, rng)
    }

    /// [`DcganEncoder::from_table`] at the width and in the variant of `options`.
    pub fn from_table_with<R: Rng + ?Sized>(
        table: &[Layer],
        tap: usize,
        in_channels: usize,
        latent_dim: usize,
        options: &EncoderOptions,
        device: &Device,
        rng: &mut R,
    ) -> Result<Self, EncoderError> {
        let sizes = [("in_channels", in_channels), ("latent_dim", latent_dim)];
        let (convs, posts) = build(table, sizes, options, false, device, rng, Conv::new)?;
        Ok(DcganEncoder { convs, posts, tap })
    }

    /// Channels of the first convolution: the width (32 unless built otherwise).
    pub fn width(&self) -> usize {
        self.convs[0].weight.dims()[0]
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.convs[0].weight.dims()[1]
    }

    /// Size of the latent `z`.
    pub fn latent_dim(&self) -> usize {
        self.convs[self.convs.len() - 1].weight.dims()[0]
    }

    /// The index of the tapped layer.
    pub fn tap(&self) -> usize {
        self.tap
    }

    /// Layers (convolutions).
    pub fn depth(&self) -> usize {
        self.convs.len()
    }

    /// Channels of the tapped feature map.
    pub fn tapped_channels(&self) -> usize {
        self.convs[self.tap].weight.dims()[0]
    }

    /// Encodes a batch `x` `[B, C, spatial...]`: the tapped map as `[B, channels, locations]`
    /// and the latent `[B, latent_dim]`.
    pub fn forward(&self, x: Tensor<D>) -> EncoderOutput {
        let mut h = x;
        let mut tapped = None;
        for (i, (conv, post)) in self.convs.iter().zip(&self.posts).enumerate() {
            let raw = conv.forward(h);
            if i == self.tap {
                tapped = Some(raw.clone());
            }
            h = post.forward(raw);
        }
        let tapped = tapped.expect("the tapped layer is one of the encoder's layers");
        let dims = tapped.dims();
        let locations: usize = dims[2..].iter().product();
        EncoderOutput {
            conv: tapped.reshape([dims[0], dims[1], locations]),
            z: h.flatten(1, D - 1),
        }
    }
}

/// The DCGAN decoder of rank `D` (`D = 4`: to images, see [`DcganDecoder2d`]; `D = 5`: to
/// volumes, see [`DcganDecoder3d`]), built from a [`Layer`] table of transposed convolutions;
/// a sigmoid maps the output into `(0, 1)`.
#[derive(Module, Debug)]
pub struct DcganDecoder<const D: usize> {
    pub(crate) deconvs: Vec<ConvTranspose<D>>,
    pub(crate) posts: Vec<Post>,
}

/// The 2D DCGAN decoder ([`DECODER_2D`]): latents `[B, latent_dim]` to `[B, C, 32, 32]`.
pub type DcganDecoder2d = DcganDecoder<4>;
/// The 3D DCGAN decoder ([`DECODER_3D`]): latents `[B, latent_dim]` to `[B, C, 64, 64, 64]`.
pub type DcganDecoder3d = DcganDecoder<5>;

impl<const D: usize> DcganDecoder<D> {
    /// Builds the decoder of `table` from `latent_dim` latents to `out_channels` channels,
    /// drawing the weights from `rng` layer by layer (Xavier-uniform).
    pub fn from_table<R: Rng + ?Sized>(
        table: &[Layer],
        out_channels: usize,
        latent_dim: usize,
        device: &Device,
        rng: &mut R,
    ) -> Result<Self, EncoderError> {
        let sizes = [("latent_dim", latent_dim), ("out_channels", out_channels)];
        let options = EncoderOptions::default();
        let (deconvs, posts) = build(
            table,
            sizes,
            &options,
            true,
            device,
            rng,
            ConvTranspose::new,
        )?;
        Ok(DcganDecoder { deconvs, posts })
    }

    /// Decodes latents `z` `[B, latent_dim]` into `[B, C, spatial...]`, values in `(0, 1)`.
    pub fn forward(&self, z: Tensor<2>) -> Tensor<D> {
        let [b, d] = z.dims();
        let mut shape = [1usize; D];
        shape[0] = b;
        shape[1] = d;
        let mut h = z.reshape(shape);
        for (deconv, post) in self.deconvs.iter().zip(&self.posts) {
            h = post.forward(deconv.forward(h));
        }
        sigmoid(h)
    }
}

macro_rules! config {
    ($(#[$doc:meta])* $name:ident, $model:ident, $outer:ident, $what:literal, $build:expr) => {
        $(#[$doc])*
        #[derive(Config, Debug)]
        pub struct $name {
            #[doc = $what]
            #[config(default = 1)]
            pub $outer: usize,
            /// Size of the latent `z`.
            #[config(default = 64)]
            pub latent_dim: usize,
        }

        impl $name {
            /// Builds the model on `device`, drawing weights from `rng`.
            pub fn init<R: Rng + ?Sized>(
                &self,
                device: &Device,
                rng: &mut R,
            ) -> Result<$model, EncoderError> {
                let build: fn(&Self, &Device, &mut R) -> Result<$model, EncoderError> = $build;
                build(self, device, rng)
            }
        }
    };
}

config!(
    /// Configuration of [`DcganEncoder2d`].
    DcganEncoder2dConfig,
    DcganEncoder2d,
    in_channels,
    "Input channels: 1 (MNIST) or 3 (SVHN).",
    |c, device, rng| DcganEncoder::from_table(ENCODER_2D, TAP_2D, c.in_channels, c.latent_dim, device, rng)
);
config!(
    /// Configuration of [`DcganEncoder3d`].
    DcganEncoder3dConfig,
    DcganEncoder3d,
    in_channels,
    "Input channels (1 for a T1 or fALFF volume).",
    |c, device, rng| DcganEncoder::from_table(ENCODER_3D, TAP_3D, c.in_channels, c.latent_dim, device, rng)
);
config!(
    /// Configuration of [`DcganDecoder2d`].
    DcganDecoder2dConfig,
    DcganDecoder2d,
    out_channels,
    "Output channels: 1 (MNIST) or 3 (SVHN).",
    |c, device, rng| DcganDecoder::from_table(DECODER_2D, c.out_channels, c.latent_dim, device, rng)
);
config!(
    /// Configuration of [`DcganDecoder3d`].
    DcganDecoder3dConfig,
    DcganDecoder3d,
    out_channels,
    "Output channels (1 for a T1 or fALFF volume).",
    |c, device, rng| DcganDecoder::from_table(DECODER_3D, c.out_channels, c.latent_dim, device, rng)
);
