//! edgeclr patch (see `PATCH.md`): 2-D convolution as per-image im2col + GEMM, for the
//! forward pass and for both gradients.
//!
//! Upstream computes the weight gradient as a convolution whose "kernel" is the whole output
//! gradient (`[c, n, h, w] ⊛ [co, n, oh, ow]`): its im2col copies the input `kh·kw` times into
//! a fresh buffer per input channel and feeds a GEMM with 9 columns, and the input gradient
//! goes through a general transposed convolution. Here every pass is one GEMM per image on an
//! NCHW slice, images split across threads:
//!
//! * forward: `y_b[co, S] = W[co, K] · col(x_b)[K, S]`
//! * input gradient: `x̄_b = col2im(Wᵀ[K, co] · ȳ_b[co, S])`
//! * weight gradient: `W̄[co, K] = Σ_b ȳ_b[co, S] · col(x_b)ᵀ[S, K]`, one partial sum per
//!   thread, added at the end
//!
//! with `K = c·kh·kw` (per group), `S = oh·ow` and `col` the unfolded input (skipped for 1×1
//! stride-1 unpadded convolutions, whose input already is the matrix). Operand transposes are
//! strides passed to `gemm`, never copies; the weight gradient is accumulated column-major and
//! transposed once at the end (`co·K` values).

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_backend::ops::ConvOptions;
use burn_std::Shape;
use num_traits::Float;

use crate::FlexTensor;
use crate::ops::kernel_util::{down, half, tensor, up};

/// The shapes of one convolution: input `[n, groups·c, h, w]`, weight `[groups·co, c, kh, kw]`,
/// output `[n, groups·co, oh, ow]` (`c` and `co` are per group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    n: usize,
    groups: usize,
    c: usize,
    h: usize,
    w: usize,
    co: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
}

impl Geometry {
    /// From the input and weight shapes and the output's spatial size.
    fn new(x: &Shape, weight: &Shape, out: [usize; 2], options: &ConvOptions<2>) -> Self {
        let groups = options.groups;
        Self {
            n: x[0],
            groups,
            c: weight[1],
            h: x[2],
            w: x[3],
            co: weight[0] / groups,
            kh: weight[2],
            kw: weight[3],
            oh: out[0],
            ow: out[1],
            stride: options.stride,
            pad: options.padding_begin(),
            dilation: options.dilation,
        }
    }

    /// Rows of the unfolded input (per group).
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Output positions per channel.
    fn spatial(&self) -> usize {
        self.oh * self.ow
    }

    /// Elements of one image's input, all groups.
    fn image_in(&self) -> usize {
        self.groups * self.c * self.h * self.w
    }

    /// Elements of one image's output, all groups.
    fn image_out(&self) -> usize {
        self.groups * self.co * self.spatial()
    }

    /// A 1×1 stride-1 unpadded convolution: the input is already the `[K, S]` matrix.
    fn pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride == [1, 1]
            && self.pad == [0, 0]
            && (self.oh, self.ow) == (self.h, self.w)
    }

    /// Output indices `[lo, hi)` along `axis` (0 rows, 1 columns) whose input index
    /// `o·stride + tap·dilation − pad` lies inside the image, for kernel tap `tap`.
    fn valid(&self, axis: usize, tap: usize) -> (usize, usize) {
        let (size, out) = if axis == 0 {
            (self.h, self.oh)
        } else {
            (self.w, self.ow)
        };
        let (s, offset) = (self.stride[axis], tap * self.dilation[axis]);
        let pad = self.pad[axis];
        let lo = pad.saturating_sub(offset).div_ceil(s);
        let hi = if offset >= size + pad {
            0
        } else {
            (size + pad - offset).div_ceil(s)
        };
        let hi = hi.min(out);
        (lo.min(hi), hi)
    }

    /// The input index of output index `o` at tap `tap` along `axis` (`o` inside `valid`).
    fn source(&self, axis: usize, o: usize, tap: usize) -> usize {
        o * self.stride[axis] + tap * self.dilation[axis] - self.pad[axis]
    }
}

/// A read-only strided matrix view.
#[derive(Clone, Copy)]
struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// Where a GEMM may use threads: inside it only when there are fewer images than threads.
#[derive(Clone, Copy)]
struct Inner(gemm::Parallelism);

impl Inner {
    fn for_images(n: usize) -> Self {
        #[cfg(feature = "rayon")]
        if n < rayon::current_num_threads() {
            return Self(gemm::Parallelism::Rayon(0));
        }
        let _ = n;
        Self(gemm::Parallelism::None)
    }
}

/// How a GEMM destination is laid out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    RowMajor,
    /// Chosen for the weight gradient: `gemm` then reads the unfolded input in place instead
    /// of packing a copy of it for every image.
    ColMajor,
}

/// `dst[m, n] = [dst +] a[m, k] · b[k, n]`, `dst` contiguous in `order`.
fn matmul<T: Float + 'static>(
    dst: &mut [T],
    order: Order,
    accumulate: bool,
    a: MatRef<T>,
    b: MatRef<T>,
    par: Inner,
) {
    assert_eq!(a.cols, b.rows, "conv2d GEMM: inner dimensions");
    assert!(
        a.in_bounds() && b.in_bounds(),
        "conv2d GEMM: operand out of bounds"
    );
    assert_eq!(dst.len(), a.rows * b.cols, "conv2d GEMM: destination size");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    let (dst_cs, dst_rs) = match order {
        Order::RowMajor => (1, n as isize),
        Order::ColMajor => (m as isize, 1),
    };
    // SAFETY: the three views are in bounds (asserted above), `dst` is exclusively borrowed
    // and holds `m × n` in `order`, and the operands are shared borrows that cannot alias it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs,
            dst_rs,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            if accumulate { T::one() } else { T::zero() },
            T::one(),
            false,
            false,
            false,
            par.0,
        );
    }
}

/// Unfolds one group of one image, `x[c, h, w]`, into `col[K, S]`: row `(ci, ky, kx)` holds
/// the input under kernel tap `(ky, kx)` of channel `ci` for every output position (zero where
/// the tap falls in the padding).
fn im2col<T: Float>(x: &[T], g: &Geometry, col: &mut [T]) {
    let s = g.spatial();
    if s == 0 {
        return;
    }
    if g.h * g.w == 0 {
        // An empty image with padding around it: every tap falls in the padding.
        col.fill(T::zero());
        return;
    }
    let mut rows = col.chunks_exact_mut(s);
    for plane in x.chunks_exact(g.h * g.w).take(g.c) {
        for ky in 0..g.kh {
            let (ylo, yhi) = g.valid(0, ky);
            for kx in 0..g.kw {
                let (xlo, xhi) = g.valid(1, kx);
                let row = rows.next().expect("col has K rows");
                for (oy, dst) in row.chunks_exact_mut(g.ow).enumerate() {
                    if oy < ylo || oy >= yhi || xlo == xhi {
                        dst.fill(T::zero());
                        continue;
                    }
                    let src = &plane[g.source(0, oy, ky) * g.w..][..g.w];
                    dst[..xlo].fill(T::zero());
                    dst[xhi..].fill(T::zero());
                    let x0 = g.source(1, xlo, kx);
                    let sx = g.stride[1];
                    if sx == 1 {
                        dst[xlo..xhi].copy_from_slice(&src[x0..x0 + xhi - xlo]);
                    } else {
                        for (i, d) in dst[xlo..xhi].iter_mut().enumerate() {
                            *d = src[x0 + i * sx];
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds `col[K, S]` back onto the image `x[c, h, w]`.
fn col2im<T: Float>(col: &[T], g: &Geometry, x: &mut [T]) {
    let s = g.spatial();
    if s == 0 || g.h * g.w == 0 {
        return;
    }
    let mut rows = col.chunks_exact(s);
    for plane in x.chunks_exact_mut(g.h * g.w).take(g.c) {
        for ky in 0..g.kh {
            let (ylo, yhi) = g.valid(0, ky);
            for kx in 0..g.kw {
                let (xlo, xhi) = g.valid(1, kx);
                let row = rows.next().expect("col has K rows");
                if xlo == xhi {
                    continue;
                }
                let (x0, sx) = (g.source(1, xlo, kx), g.stride[1]);
                for oy in ylo..yhi {
                    let src = &row[oy * g.ow + xlo..oy * g.ow + xhi];
                    let iy = g.source(0, oy, ky);
                    let dst = &mut plane[iy * g.w..][..g.w];
                    for (i, v) in src.iter().enumerate() {
                        dst[x0 + i * sx] = dst[x0 + i * sx] + *v;
                    }
                }
            }
        }
    }
}

/// The `[K, S]` matrix of one group of one image: the input itself for pointwise
/// convolutions, else its unfolding into `scratch`.
fn unfolded<'a, T: Float>(x: &'a [T], g: &Geometry, scratch: &'a mut [T]) -> MatRef<'a, T> {
    let (k, s) = (g.k(), g.spatial());
    if g.pointwise() {
        return MatRef::row_major(&x[..k * s], k, s);
    }
    im2col(x, g, scratch);
    MatRef::row_major(scratch, k, s)
}

/// Runs `f(image, out_chunk, scratch)` for every image, images split across threads, each
/// thread with its own scratch buffer of `scratch_len` elements.
fn per_image<T, F>(out: &mut [T], chunk: usize, scratch_len: usize, f: F)
where
    T: Float + Send + Sync,
    F: Fn(usize, &mut [T], &mut [T]) + Send + Sync,
{
    if chunk == 0 {
        return;
    }
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(chunk).enumerate().for_each_init(
            || vec![T::zero(); scratch_len],
            |scratch, (b, o)| f(b, o, scratch),
        );
    }
    #[cfg(not(feature = "rayon"))]
    {
        let mut scratch = vec![T::zero(); scratch_len];
        for (b, o) in out.chunks_mut(chunk).enumerate() {
            f(b, o, &mut scratch);
        }
    }
}

fn forward_typed<T: Float + bytemuck::Pod + Send + Sync + 'static>(
    x: &[T],
    weight: &[T],
    bias: Option<&[T]>,
    g: &Geometry,
) -> Vec<T> {
    let (k, s, inner) = (g.k(), g.spatial(), Inner::for_images(g.n));
    let mut out = vec![T::zero(); g.n * g.image_out()];
    let scratch = if g.pointwise() { 0 } else { k * s };
    per_image(&mut out, g.image_out(), scratch, |b, y, scratch| {
        let x = &x[b * g.image_in()..][..g.image_in()];
        for grp in 0..g.groups {
            let xg = &x[grp * g.c * g.h * g.w..];
            let wg = MatRef::row_major(&weight[grp * g.co * k..][..g.co * k], g.co, k);
            let yg = &mut y[grp * g.co * s..][..g.co * s];
            matmul(
                yg,
                Order::RowMajor,
                false,
                wg,
                unfolded(xg, g, scratch),
                inner,
            );
        }
        if let Some(bias) = bias {
            for (row, &bv) in y.chunks_exact_mut(s).zip(bias) {
                row.iter_mut().for_each(|v| *v = *v + bv);
            }
        }
    });
    out
}

fn x_backward_typed<T: Float + bytemuck::Pod + Send + Sync + 'static>(
    weight: &[T],
    grad: &[T],
    g: &Geometry,
) -> Vec<T> {
    let (k, s, inner) = (g.k(), g.spatial(), Inner::for_images(g.n));
    let mut dx = vec![T::zero(); g.n * g.image_in()];
    let scratch = if g.pointwise() { 0 } else { k * s };
    per_image(&mut dx, g.image_in(), scratch, |b, dx, scratch| {
        let dy = &grad[b * g.image_out()..][..g.image_out()];
        for grp in 0..g.groups {
            let wt = MatRef::row_major(&weight[grp * g.co * k..][..g.co * k], g.co, k).t();
            let dyg = MatRef::row_major(&dy[grp * g.co * s..][..g.co * s], g.co, s);
            let dxg = &mut dx[grp * g.c * g.h * g.w..][..g.c * g.h * g.w];
            if g.pointwise() {
                matmul(dxg, Order::RowMajor, false, wt, dyg, inner);
            } else {
                matmul(scratch, Order::RowMajor, false, wt, dyg, inner);
                col2im(scratch, g, dxg);
            }
        }
    });
    dx
}

/// Adds the weight gradient of images `images` into `acc`: per group, `[co, K]` column-major.
fn weight_grad_into<T: Float + 'static>(
    acc: &mut [T],
    scratch: &mut [T],
    x: &[T],
    grad: &[T],
    images: core::ops::Range<usize>,
    g: &Geometry,
) {
    let (k, s, inner) = (g.k(), g.spatial(), Inner::for_images(g.n));
    for b in images {
        let xb = &x[b * g.image_in()..][..g.image_in()];
        let dy = &grad[b * g.image_out()..][..g.image_out()];
        for grp in 0..g.groups {
            let col = unfolded(&xb[grp * g.c * g.h * g.w..], g, scratch);
            let dyg = MatRef::row_major(&dy[grp * g.co * s..][..g.co * s], g.co, s);
            matmul(
                &mut acc[grp * g.co * k..][..g.co * k],
                Order::ColMajor,
                true,
                dyg,
                col.t(),
                inner,
            );
        }
    }
}

/// Per group, `[co, K]` column-major (as accumulated) to row-major (the weight's layout).
fn to_row_major<T: Float>(acc: &[T], g: &Geometry) -> Vec<T> {
    let (k, co) = (g.k(), g.co);
    let mut out = vec![T::zero(); acc.len()];
    for (src, dst) in acc.chunks_exact(co * k).zip(out.chunks_exact_mut(co * k)) {
        for (kk, column) in src.chunks_exact(co).enumerate() {
            for (o, &v) in column.iter().enumerate() {
                dst[o * k + kk] = v;
            }
        }
    }
    out
}

fn weight_backward_typed<T: Float + bytemuck::Pod + Send + Sync + 'static>(
    x: &[T],
    grad: &[T],
    g: &Geometry,
) -> Vec<T> {
    if g.co * g.k() == 0 {
        return vec![T::zero(); g.groups * g.co * g.k()];
    }
    to_row_major(&weight_grad_sum(x, grad, g), g)
}

/// The weight gradient summed over all images, per group `[co, K]` column-major.
fn weight_grad_sum<T: Float + bytemuck::Pod + Send + Sync + 'static>(
    x: &[T],
    grad: &[T],
    g: &Geometry,
) -> Vec<T> {
    let len = g.groups * g.co * g.k();
    let scratch = if g.pointwise() {
        0
    } else {
        g.k() * g.spatial()
    };
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        let parts = rayon::current_num_threads().clamp(1, g.n.max(1));
        let per = g.n.div_ceil(parts).max(1);
        (0..parts)
            .into_par_iter()
            .map(|p| {
                let mut acc = vec![T::zero(); len];
                let mut col = vec![T::zero(); scratch];
                let images = (p * per).min(g.n)..((p + 1) * per).min(g.n);
                weight_grad_into(&mut acc, &mut col, x, grad, images, g);
                acc
            })
            .reduce(
                || vec![T::zero(); len],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(a, b)| *a = *a + *b);
                    a
                },
            )
    }
    #[cfg(not(feature = "rayon"))]
    {
        let mut acc = vec![T::zero(); len];
        let mut col = vec![T::zero(); scratch];
        weight_grad_into(&mut acc, &mut col, x, grad, 0..g.n, g);
        acc
    }
}

/// Runs `f` on f32 copies of half-precision tensors and casts the result back.
fn via_f32(
    dtype: DType,
    tensors: Vec<FlexTensor>,
    f: impl FnOnce(Vec<FlexTensor>) -> FlexTensor,
) -> FlexTensor {
    let back = half(dtype).unwrap_or_else(|| panic!("conv2d: unsupported dtype {dtype:?}"));
    down(f(up(tensors)), back)
}

/// `conv2d` forward: `x [n, c, h, w]`, `weight [co, c/groups, kh, kw]`.
pub(crate) fn forward(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
    let bias = bias.map(|b| b.to_contiguous());
    let (xs, ws) = (x.layout().shape().clone(), weight.layout().shape().clone());
    let out = core::array::from_fn(|i| {
        burn_backend::ops::conv::calculate_conv_output_size_asymmetric(
            ws[2 + i],
            options.stride[i],
            options.padding[i],
            options.dilation[i],
            xs[2 + i],
        )
    });
    let g = Geometry::new(&xs, &ws, out, options);
    let shape = Shape::from(vec![g.n, g.groups * g.co, g.oh, g.ow]);
    match x.dtype() {
        DType::F32 => {
            let b = bias.as_ref().map(|b| b.storage::<f32>());
            tensor(forward_typed(x.storage(), weight.storage(), b, &g), shape)
        }
        DType::F64 => {
            let b = bias.as_ref().map(|b| b.storage::<f64>());
            tensor(forward_typed(x.storage(), weight.storage(), b, &g), shape)
        }
        dtype => {
            let mut all = vec![x, weight];
            all.extend(bias);
            via_f32(dtype, all, |mut t| {
                let bias = (t.len() == 3).then(|| t.pop().expect("three tensors"));
                let (weight, x) = (t.pop().expect("weight"), t.pop().expect("x"));
                forward(x, weight, bias, options)
            })
        }
    }
}

/// `conv2d` input gradient for an input of shape `x_shape`.
pub(crate) fn x_backward(
    x_shape: Shape,
    weight: FlexTensor,
    grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let (weight, grad) = (weight.to_contiguous(), grad.to_contiguous());
    let ws = weight.layout().shape().clone();
    let gs = grad.layout().shape().clone();
    let g = Geometry::new(&x_shape, &ws, [gs[2], gs[3]], options);
    match grad.dtype() {
        DType::F32 => tensor(
            x_backward_typed::<f32>(weight.storage(), grad.storage(), &g),
            x_shape.clone(),
        ),
        DType::F64 => tensor(
            x_backward_typed::<f64>(weight.storage(), grad.storage(), &g),
            x_shape.clone(),
        ),
        dtype => via_f32(dtype, vec![weight, grad], |mut t| {
            let (grad, weight) = (t.pop().expect("grad"), t.pop().expect("weight"));
            x_backward(x_shape, weight, grad, options)
        }),
    }
}

/// `conv2d` weight gradient for a weight of shape `weight_shape`.
pub(crate) fn weight_backward(
    x: FlexTensor,
    weight_shape: Shape,
    grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let (x, grad) = (x.to_contiguous(), grad.to_contiguous());
    let xs = x.layout().shape().clone();
    let gs = grad.layout().shape().clone();
    let g = Geometry::new(&xs, &weight_shape, [gs[2], gs[3]], options);
    match x.dtype() {
        DType::F32 => tensor(
            weight_backward_typed::<f32>(x.storage(), grad.storage(), &g),
            weight_shape.clone(),
        ),
        DType::F64 => tensor(
            weight_backward_typed::<f64>(x.storage(), grad.storage(), &g),
            weight_shape.clone(),
        ),
        dtype => via_f32(dtype, vec![x, grad], |mut t| {
            let (grad, x) = (t.pop().expect("grad"), t.pop().expect("x"));
            weight_backward(x, weight_shape, grad, options)
        }),
    }
}
