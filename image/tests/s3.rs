//! imread over S3 (moto_server): TIFF stacks (multi-page, 16-bit) and PNGs
//! written by tifffile/scikit-image and uploaded with boto3, read by rask
//! through a glob, checked against scikit-image's reading of the same files.

use rask::core::DType;
use rask_array::{Array, Chunks};
use rask_image::io::{ImreadOptions, imread, imread_with, imwrite};
use rask_storage::StorageOptions;
use rask_storage::testing::Moto;

const FIXTURES: &str = r#"
import io, numpy as np, tifffile, skimage.io
s3.create_bucket(Bucket='images')
rng = np.random.default_rng(5)
sums = []
for i in range(3):
    stack = rng.integers(0, 65535, size=(4, 64, 48), dtype=np.uint16)
    buf = io.BytesIO()
    tifffile.imwrite(buf, stack, photometric='minisblack')
    s3.put_object(Bucket='images', Key=f'stacks/s{i}.tif', Body=buf.getvalue())
    back = skimage.io.imread(io.BytesIO(buf.getvalue()), plugin='tifffile')
    sums.append(int(back.astype(np.int64).sum()))
for i in range(2):
    img = rng.integers(0, 255, size=(32, 40, 3), dtype=np.uint8)
    buf = io.BytesIO()
    skimage.io.imsave(buf, img, extension='.png', check_contrast=False)
    s3.put_object(Bucket='images', Key=f'png/p{i}.png', Body=buf.getvalue())
    sums.append(int(skimage.io.imread(io.BytesIO(buf.getvalue())).astype(np.int64).sum()))
print(sum(sums[:3]), sum(sums[3:]))
"#;

#[test]
fn imread_globs_over_s3() {
    let moto = Moto::start();
    if !moto.run_in_env("imread_globs_over_s3") {
        return;
    }
    let sums: Vec<f64> = moto.python(FIXTURES, &[]).split_whitespace().map(|x| x.parse().expect("numbers")).collect();
    let before = rask_storage::counters();
    let stacks = imread("s3://images/stacks/*.tif").expect("imread TIFF");
    // Building reads headers only: a listing, then per file a HEAD and the
    // 256 KiB block holding the header, and a HEAD for the task token.
    let requests = rask_storage::counters().requests - before.requests;
    assert!(requests <= 1 + 3 * 4, "{requests} requests to read 3 headers");
    assert_eq!(stacks.shape(), vec![Some(12), Some(64), Some(48)]);
    assert_eq!(stacks.dtype(), rask::core::DType::U16);
    let total: f64 = stacks.sum().expect("sum").compute_scalar().expect("compute");
    assert_eq!(total, sums[0]);

    let pngs = imread("s3://images/png/*.png").expect("imread PNG");
    assert_eq!(pngs.shape(), vec![Some(2), Some(32), Some(40), Some(3)]);
    let total: f64 = pngs.sum().expect("sum").compute_scalar().expect("compute");
    assert_eq!(total, sums[1]);

    let e = imread("s3://images/none/*.tif").expect_err("no match").to_string();
    assert!(e.contains("s3://images/none/*.tif"), "{e}");
}

const CHECK_WRITTEN: &str = r#"
import io, numpy as np, skimage.io, tifffile
# tifffile for the stack: skimage.io would move a 3-page axis last (its RGB guess).
tif = tifffile.imread(io.BytesIO(s3.get_object(Bucket='out', Key='copy/stack.tif')['Body'].read()))
pngs = [skimage.io.imread(io.BytesIO(s3.get_object(Bucket='out', Key=f'frames/f_{i:04}.png')['Body'].read())) for i in range(3)]
keys = sorted(o['Key'] for o in s3.list_objects_v2(Bucket='out')['Contents'])
print(tif.dtype, *tif.shape, int(tif.astype(np.int64).sum()), int(sum(p.astype(np.int64).sum() for p in pngs)), len(keys))
"#;

#[test]
fn imwrite_to_s3_is_what_tifffile_and_scikit_image_read() {
    let moto = Moto::start();
    if !moto.run_in_env("imwrite_to_s3_is_what_tifffile_and_scikit_image_read") {
        return;
    }
    moto.create_bucket("out");
    let stack = Array::randint(0, 60000, &[3, 40, 24], 9, Chunks::Uniform(vec![1, 40, 24]))
        .expect("randint")
        .astype(DType::U16);
    let total: f64 = stack.sum().expect("sum").compute_scalar().expect("compute");
    let written = imwrite(&stack, "s3://out/copy/stack.tif").expect("imwrite TIFF to S3");
    assert_eq!(written.len(), 1);
    let bytes = stack.astype(DType::U8);
    let frames = imwrite(&bytes, "s3://out/frames/f_{}.png").expect("imwrite PNGs to S3");
    assert_eq!(frames.len(), 3);
    let png_total: f64 = bytes.sum().expect("sum").compute_scalar().expect("compute");

    let out = moto.python(CHECK_WRITTEN, &[]);
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields[..4], ["uint16", "3", "40", "24"], "{out}");
    assert_eq!(fields[4].parse::<f64>().expect("sum"), total, "{out}");
    assert_eq!(fields[5].parse::<f64>().expect("sum"), png_total, "{out}");
    assert_eq!(fields[6], "4", "exactly the TIFF and three PNGs: {out}");

    // rask reads back what it wrote, with per-call options.
    let options =
        ImreadOptions { storage: StorageOptions::default().endpoint_url(moto.endpoint()), ..Default::default() };
    let back = imread_with("s3://out/frames/*.png", &options).expect("imread back");
    assert_eq!(back.shape(), vec![Some(3), Some(40), Some(24)]);
    let back_total: f64 = back.sum().expect("sum").compute_scalar().expect("compute");
    assert_eq!(back_total, png_total);

    // Per-call options reach the reads: a dead endpoint fails, naming the URL.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let bad = ImreadOptions {
        storage: StorageOptions::default().endpoint_url(&format!("http://127.0.0.1:{port}")).max_attempts(1),
        ..Default::default()
    };
    let e = imread_with("s3://out/frames/*.png", &bad).expect_err("dead endpoint").to_string();
    assert!(e.contains("s3://out/frames/"), "{e}");
    // A writer's failure leaves nothing behind.
    let e = imwrite(&bytes, "s3://no-such-bucket/x.tif").expect_err("missing bucket").to_string();
    assert!(e.contains("s3://no-such-bucket/x.tif"), "{e}");
}
