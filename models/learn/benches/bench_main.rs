//! Criterion benchmarks of the learning core; one module per topic.

#![allow(missing_docs)] // criterion_group! generates undocumented items

mod augment;

criterion::criterion_main!(augment::benches);
