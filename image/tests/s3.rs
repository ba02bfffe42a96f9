//! imread over S3 (moto_server): TIFF stacks (multi-page, 16-bit) and PNGs
//! written by tifffile/scikit-image and uploaded with boto3, read by rask
//! through a glob, checked against scikit-image's reading of the same files.

use rask_image::io::imread;
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
