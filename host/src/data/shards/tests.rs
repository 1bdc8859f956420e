use super::*;

/// A 6×4 PNG whose pixels encode `i`, so a decoded sample names itself.
fn png_of(i: usize) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(6, 4, image::Rgb([(i % 256) as u8, (i / 256) as u8, 7]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

fn id(img: &RgbImage) -> usize {
    let p = img.pixel(0, 0);
    usize::from(p[0]) + 256 * usize::from(p[1])
}

/// `n` samples labelled `i % 3` in shards of `per_shard`; sample `bad` (if any) is garbage.
fn write_set(dir: &Path, n: usize, per_shard: usize, bad: Option<usize>) -> ShardIndex {
    let mut w = ShardWriter::new(dir, per_shard, vec!["a".into(), "b".into(), "c".into()]);
    for i in 0..n {
        let bytes = if bad == Some(i) {
            b"not an image".to_vec()
        } else {
            png_of(i)
        };
        w.add(&bytes, "png", (i % 3) as u16).expect("add");
    }
    w.finish().expect("finish")
}

fn ids(batches: &mut ShardBatches, count: usize, size: usize) -> Vec<Vec<usize>> {
    (0..count)
        .map(|_| {
            let (images, labels) = batches.next_batch(size).expect("batch");
            for (img, l) in images.iter().zip(&labels) {
                assert_eq!(usize::from(*l), id(img) % 3, "label travels with its image");
            }
            images.iter().map(id).collect()
        })
        .collect()
}

#[test]
fn a_pass_yields_every_sample_once_in_an_order_fixed_by_seed_and_pass() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let index = write_set(tmp.path(), 50, 16, None);
    assert_eq!(
        index.shards.iter().map(|s| s.samples).collect::<Vec<_>>(),
        [16, 16, 16, 2]
    );
    assert_eq!(ShardIndex::load(tmp.path()).expect("index"), index);
    let keys = |seed, pass| -> Vec<String> {
        ShardStream::open(tmp.path(), seed, pass, 8, 0)
            .expect("open")
            .map(|s| s.key)
            .collect()
    };
    let first = keys(1, 0);
    let mut sorted = first.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 50, "every sample exactly once");
    assert_ne!(first, sorted, "shuffled, not in file order");
    assert_eq!(first, keys(1, 0), "a pass is a function of (seed, pass)");
    assert_ne!(first, keys(1, 1));
    assert_ne!(first, keys(2, 0));
}

#[test]
fn batches_resume_on_the_right_sample_across_passes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_set(tmp.path(), 50, 16, None);
    // 10 batches of 7 run through pass 0 (50 samples) into pass 1.
    let mut straight = ShardBatches::open(tmp.path(), 3, 8, Position::default(), 0).expect("open");
    let mut positions = Vec::new();
    let mut all = Vec::new();
    for _ in 0..10 {
        all.extend(ids(&mut straight, 1, 7));
        positions.push(straight.position());
    }
    assert_eq!(positions[6], Position { pass: 0, taken: 49 });
    assert_eq!(positions[7], Position { pass: 1, taken: 6 });
    let pass0: std::collections::BTreeSet<usize> = all[..7].iter().flatten().copied().collect();
    assert_eq!(pass0.len(), 49, "no repeats within a pass");
    for at in [2, 6, 7] {
        let mut resumed = ShardBatches::open(tmp.path(), 3, 8, positions[at], 0).expect("resume");
        assert_eq!(
            ids(&mut resumed, 2, 7),
            all[at + 1..at + 3],
            "resumed after batch {at}"
        );
    }
}

#[test]
fn corrupt_samples_are_skipped_and_counted_and_a_truncated_shard_ends_early() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let index = write_set(tmp.path(), 40, 10, Some(5));
    let mut b = ShardBatches::open(tmp.path(), 0, 4, Position::default(), 0).expect("open");
    let seen: Vec<usize> = ids(&mut b, 4, 10).concat();
    assert_eq!(seen.len(), 40, "batches stay full");
    assert_eq!(b.corrupt, 1);
    assert!(!seen.contains(&5));
    assert_eq!(
        b.position(),
        Position { pass: 1, taken: 1 },
        "the gap was filled from pass 1"
    );

    // Cut a shard in half: its first samples are read, the rest skipped with a warning.
    let victim = tmp.path().join(&index.shards[1].file);
    let bytes = std::fs::read(&victim).expect("read");
    std::fs::write(&victim, &bytes[..bytes.len() / 2 + 100]).expect("truncate");
    let mut s = ShardStream::open(tmp.path(), 0, 0, 4, 0).expect("open");
    let n = s.by_ref().count();
    assert!(
        (30..40).contains(&n),
        "{n} samples from a set with half a shard missing"
    );
    assert_eq!(s.unreadable_shards, 1);
}

#[test]
fn a_missing_shard_or_index_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = ShardIndex::load(tmp.path()).expect_err("no index");
    assert!(format!("{err:#}").contains("edgeclr shard"), "{err:#}");
    let index = write_set(tmp.path(), 12, 5, None);
    std::fs::remove_file(tmp.path().join(&index.shards[2].file)).expect("rm");
    let err = ShardIndex::load(tmp.path()).expect_err("missing shard");
    assert!(
        format!("{err:#}").contains(&index.shards[2].file),
        "{err:#}"
    );
}

#[test]
fn a_position_past_the_end_of_its_pass_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_set(tmp.path(), 12, 5, None);
    assert!(ShardStream::open(tmp.path(), 0, 0, 4, 12).is_ok());
    let err = ShardStream::open(tmp.path(), 0, 0, 4, 13)
        .err()
        .expect("past the end");
    assert!(format!("{err:#}").contains("shards changed"), "{err:#}");
}

#[test]
fn an_index_naming_files_outside_its_folder_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_set(tmp.path(), 6, 5, None);
    let path = tmp.path().join(INDEX);
    let text = std::fs::read_to_string(&path).expect("index");
    std::fs::write(
        &path,
        text.replace("shard-000001.tar", "../shard-000001.tar"),
    )
    .expect("write");
    let err = ShardIndex::load(tmp.path()).expect_err("escapes");
    assert!(format!("{err:#}").contains("plain file names"), "{err:#}");
}
