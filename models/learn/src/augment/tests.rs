//! Property tests of the augmentation family.

use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;

fn image_strategy() -> impl Strategy<Value = RgbImage> {
    (1usize..48, 1usize..48).prop_flat_map(|(w, h)| {
        proptest::collection::vec(any::<u8>(), w * h * 3)
            .prop_map(move |d| RgbImage::new(w, h, d).expect("sized by construction"))
    })
}

fn float_image(w: usize, h: usize, seed: u64) -> FloatImage {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    FloatImage {
        width: w,
        height: h,
        chw: (0..3 * w * h).map(|_| rng.random::<f32>()).collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn views_have_shape_and_unit_range(img in image_strategy(), seed in any::<u64>(), size in 4usize..40) {
        let cfg = AugmentConfig::default().with_image_size(size);
        let v = cfg.view(&img, &mut ChaCha8Rng::seed_from_u64(seed));
        prop_assert_eq!((v.width, v.height, v.chw.len()), (size, size, 3 * size * size));
        prop_assert!(v.chw.iter().all(|x| (0.0..=1.0).contains(x)), "value out of [0,1]");
    }

    #[test]
    fn same_seed_same_views(img in image_strategy(), seed in any::<u64>()) {
        let cfg = AugmentConfig::default().with_image_size(16);
        let a = ViewPair::new(&cfg, &img, &mut ChaCha8Rng::seed_from_u64(seed));
        let b = ViewPair::new(&cfg, &img, &mut ChaCha8Rng::seed_from_u64(seed));
        prop_assert_eq!(a, b);
    }

    #[test]
    fn flip_twice_is_identity(w in 1usize..20, h in 1usize..20, seed in any::<u64>()) {
        let original = float_image(w, h, seed);
        let mut img = original.clone();
        flip::hflip(&mut img);
        flip::hflip(&mut img);
        prop_assert_eq!(img, original);
    }

    #[test]
    fn flip_mirrors_columns(w in 1usize..20, h in 1usize..20, seed in any::<u64>()) {
        let original = float_image(w, h, seed);
        let mut img = original.clone();
        flip::hflip(&mut img);
        for c in 0..3 { for y in 0..h { for x in 0..w {
            prop_assert_eq!(img.chw[c*w*h + y*w + x], original.chw[c*w*h + y*w + (w-1-x)]);
        }}}
    }

    #[test]
    fn crops_lie_inside_and_within_bounds(w in 1usize..300, h in 1usize..300, seed in any::<u64>()) {
        let cfg = CropConfig::default();
        let b = crop::sample_crop(&cfg, w, h, &mut ChaCha8Rng::seed_from_u64(seed));
        prop_assert!(b.width >= 1 && b.height >= 1);
        prop_assert!(b.x + b.width <= w && b.y + b.height <= h, "{:?} outside {}x{}", b, w, h);
        let area = (b.width * b.height) as f64 / (w * h) as f64;
        let aspect = b.width as f64 / b.height as f64;
        // Rounding the sides to whole pixels moves area and aspect by at most one pixel per side.
        let area_slack = (b.width + b.height + 1) as f64 / (w * h) as f64;
        let aspect_slack = (1.0 / b.height as f64) * (1.0 + aspect);
        let full = b.width == w || b.height == h; // the centred fallback keeps one full side
        prop_assert!(area <= 1.0 + 1e-12);
        prop_assert!(full || area + area_slack >= cfg.min_area, "area {} too small", area);
        prop_assert!(full || (aspect + aspect_slack >= cfg.min_aspect && aspect - aspect_slack <= cfg.max_aspect),
            "aspect {} out of bounds", aspect);
    }

    #[test]
    fn jitter_with_zero_strength_is_identity(w in 1usize..16, h in 1usize..16, seed in any::<u64>()) {
        let original = float_image(w, h, seed);
        let mut img = original.clone();
        JitterParams::sample(0.0, &mut ChaCha8Rng::seed_from_u64(seed)).apply(&mut img);
        prop_assert_eq!(img, original);
    }

    #[test]
    fn grayscale_has_equal_channels(w in 1usize..16, h in 1usize..16, seed in any::<u64>()) {
        let mut img = float_image(w, h, seed);
        grayscale::to_grayscale(&mut img);
        let p = w * h;
        prop_assert!((0..p).all(|i| img.chw[i] == img.chw[p + i] && img.chw[i] == img.chw[2 * p + i]));
    }

    #[test]
    fn blur_of_constant_is_constant(w in 1usize..24, h in 1usize..24, v in 0.0f32..1.0, sigma in 0.1f32..2.0, k in 1usize..5) {
        let mut img = FloatImage { width: w, height: h, chw: vec![v; 3 * w * h] };
        blur::gaussian_blur(&mut img, sigma, 2 * k + 1);
        prop_assert!(img.chw.iter().all(|x| (x - v).abs() < 1e-5));
    }
}

#[test]
fn bilinear_downscale_matches_hand_computation() {
    let img = RgbImage::new(3, 2, (0u8..18).map(|v| v * 10).collect()).expect("3x2");
    let v = crop::resized_crop(&img, CropBox::full(3, 2), 2);
    // 3x2 -> 2x2: column centres map to x = 0.25 and 1.75 (half-pixel), rows to y = 0 and 1.
    // R plane of the source is [[0, 30, 60], [90, 120, 150]]:
    // out[0][0] = 0.75*0 + 0.25*30 = 7.5 ; out[0][1] = 0.25*30 + 0.75*60 = 52.5
    let r: Vec<f32> = v.chw[..4].iter().map(|x| x * 255.0).collect();
    let want = [7.5, 52.5, 97.5, 142.5];
    for (g, w) in r.iter().zip(want) {
        assert!((g - w).abs() < 1e-3, "{r:?} vs {want:?}");
    }
}

#[test]
fn batch_is_independent_of_thread_count() {
    let imgs: Vec<RgbImage> = (0..6u8)
        .map(|k| {
            RgbImage::new(
                8,
                8,
                (0..192).map(|i| (i as u8).wrapping_mul(k + 1)).collect(),
            )
            .expect("8x8")
        })
        .collect();
    let refs: Vec<&RgbImage> = imgs.iter().collect();
    let builder = BatchBuilder::new(AugmentConfig::cifar().with_image_size(8));
    let many = builder.views(&refs, 7);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool")
        .install(|| builder.views(&refs, 7));
    assert_eq!(many, one);
    assert_eq!(many.len(), 12 * 3 * 64);
    // Views of image 0 are rows 0 and 1, and they differ (two independent draws).
    assert_ne!(many[..192], many[192..384]);
}

#[test]
fn validate_names_bad_field() {
    let err = AugmentConfig::default()
        .with_color_strength(-1.0)
        .validate()
        .expect_err("negative strength");
    assert!(err.to_string().contains("augment.color_strength"), "{err}");
}

#[test]
fn saturated_images_stay_in_unit_range_through_every_op() {
    // Shrunk from a proptest failure: near-white pixels went 1 ulp above 1.0 after
    // resampling / blur. Every op on, many seeds, a half-saturated image.
    let data: Vec<u8> = (0..21 * 20 * 3)
        .map(|i| {
            if i % 3 == 0 {
                255
            } else {
                (i * 37 % 256) as u8
            }
        })
        .collect();
    let img = RgbImage::new(21, 20, data).expect("21x20");
    let cfg = AugmentConfig {
        jitter_p: 1.0,
        grayscale_p: 0.5,
        blur_p: 1.0,
        ..AugmentConfig::default().with_image_size(17)
    };
    for seed in 0..200 {
        let v = cfg.view(&img, &mut ChaCha8Rng::seed_from_u64(seed));
        assert!(v.chw.iter().all(|x| (0.0..=1.0).contains(x)), "seed {seed}");
    }
}
