//! View pairs per second per core at 32×32 and 96×96 (the paper's CIFAR and STL-10 sizes).
//! Single-threaded: the batch builder scales this by the cores rayon is given.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use edgeclr_artifact::RgbImage;
use edgeclr_learn::augment::{AugmentConfig, ViewPair};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn image(side: usize) -> RgbImage {
    let data = (0..side * side * 3)
        .map(|i| ((i * 7919) % 251) as u8)
        .collect();
    RgbImage::new(side, side, data).expect("square image")
}

fn view_pairs(c: &mut Criterion) {
    let mut group = c.benchmark_group("augment_view_pairs_cpu1");
    group.throughput(Throughput::Elements(1));
    for (side, cfg) in [
        (32, AugmentConfig::cifar()),
        (96, AugmentConfig::default().with_image_size(96)),
    ] {
        let img = image(side);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{side}px")),
            &img,
            |b, img| {
                b.iter(|| ViewPair::new(&cfg, img, &mut rng));
            },
        );
    }
    group.finish();
}

criterion_group!(benches, view_pairs);
