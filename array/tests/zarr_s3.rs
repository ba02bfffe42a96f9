//! Zarr on S3 (moto_server): zarr-python writes a store through boto3 that
//! rask reads chunk by chunk, and a store rask writes is read back by
//! zarr-python. Bodies run in a child with the standard AWS environment.

use rask_array::zarr::{ZarrFormat, ZarrWriteOptions};
use rask_array::{Array, Chunks, StorageOptions};
use rask_storage::testing::Moto;

#[test]
fn zarr_stores_on_s3_both_ways() {
    let moto = Moto::start();
    if !moto.run_in_env("zarr_stores_on_s3_both_ways") {
        return;
    }
    moto.create_bucket("arrays");
    // zarr-python writes to a local store; boto3 uploads its files as keys.
    let sum = moto.python(
        "import os, tempfile, numpy as np, zarr\n\
         d = tempfile.mkdtemp()\n\
         z = zarr.create_array(store=os.path.join(d, 'v.zarr'), shape=(100, 60), chunks=(30, 25), dtype='int32', compressors=None)\n\
         z[:] = np.arange(6000, dtype='int32').reshape(100, 60)\n\
         for root, _, files in os.walk(os.path.join(d, 'v.zarr')):\n\
         \x20   for f in files:\n\
         \x20       p = os.path.join(root, f)\n\
         \x20       s3.upload_file(p, 'arrays', 'in/' + os.path.relpath(p, d))\n\
         print(int(z[:].sum()))",
        &[],
    );
    let a = Array::from_zarr("s3://arrays/in/v.zarr").expect("from_zarr");
    assert_eq!(a.shape(), vec![Some(100), Some(60)]);
    let total: f64 = a.sum().expect("sum").compute_scalar().expect("compute");
    assert_eq!(total, sum.trim().parse::<f64>().expect("number"));

    let b = Array::random_uniform(&[50, 40], 3, Chunks::Uniform(vec![20, 15])).expect("random");
    b.to_zarr("s3://arrays/out/r.zarr", ZarrFormat::V3).expect("to_zarr");
    let mine: f64 = b.sum().expect("sum").compute_scalar().expect("compute");
    let theirs = moto.python(
        "import tempfile, zarr\n\
         d = tempfile.mkdtemp()\n\
         for o in s3.list_objects_v2(Bucket='arrays', Prefix='out/')['Contents']:\n\
         \x20   p = os.path.join(d, o['Key'])\n\
         \x20   os.makedirs(os.path.dirname(p), exist_ok=True)\n\
         \x20   s3.download_file('arrays', o['Key'], p)\n\
         z = zarr.open_array(os.path.join(d, 'out/r.zarr'), mode='r')\n\
         print(repr(float(z[:].sum())), z.shape)",
        &[],
    );
    let mut fields = theirs.split_whitespace();
    let (value, shape) = (fields.next().expect("sum"), fields.next().expect("shape"));
    assert!((value.parse::<f64>().expect("float") - mine).abs() < 1e-9, "{theirs}");
    assert_eq!(shape, "(50,", "{theirs}");
    let keys = moto.python("print(s3.list_objects_v2(Bucket='arrays', Prefix='out/r.zarr/')['KeyCount'])", &[]);
    assert_eq!(keys.trim(), (1 + 3 * 3).to_string(), "zarr.json and one object per chunk");

    // Per-call options: the store through an explicit endpoint, and a dead
    // endpoint failing with the store's URL.
    let good = StorageOptions::default().endpoint_url(moto.endpoint());
    let c = Array::from_zarr_with("s3://arrays/out/r.zarr", &good).expect("from_zarr_with");
    let again: f64 = c.sum().expect("sum").compute_scalar().expect("compute");
    assert!((again - mine).abs() < 1e-9);
    let write = |storage: &StorageOptions| ZarrWriteOptions { storage: storage.clone(), ..Default::default() };
    b.to_zarr_with("s3://arrays/copy/r.zarr", &write(&good)).expect("to_zarr_with");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let bad = StorageOptions::default().endpoint_url(&format!("http://127.0.0.1:{port}")).max_attempts(1);
    let e = Array::from_zarr_with("s3://arrays/out/r.zarr", &bad).expect_err("dead endpoint").to_string();
    assert!(e.contains("s3://arrays/out/r.zarr"), "{e}");
    let e = b.to_zarr_with("s3://arrays/nowhere/r.zarr", &write(&bad)).expect_err("dead endpoint").to_string();
    assert!(e.contains("s3://arrays/nowhere/r.zarr"), "{e}");
}
