//! rask-storage against a real S3 endpoint: moto_server on 127.0.0.1,
//! fixtures and checks through boto3. Each test body runs in a child
//! process configured the standard AWS way (`Moto::run_in_env`).

use std::io::Write;
use std::time::{Duration, Instant};

use rask_storage::testing::Moto;
use rask_storage::{StorageError, StorageOptions, Writer};

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 13) as u8)).collect()
}

#[test]
fn reads_writes_ranges_and_multipart() {
    let moto = Moto::start();
    if !moto.run_in_env("reads_writes_ranges_and_multipart") {
        return;
    }
    let o = moto.options();
    moto.create_bucket("roundtrip");
    let small = data(1000, 1);
    moto.put("roundtrip", "small.bin", &small);
    let url = "s3://roundtrip/small.bin";
    assert_eq!(rask_storage::read(url, &o).expect("read"), small);
    assert_eq!(rask_storage::read_range(url, 10, 20, &o).expect("range"), small[10..30]);
    let (tail, size) = rask_storage::read_tail(url, 64, &o).expect("tail");
    assert_eq!((tail.as_ref(), size), (&small[936..], 1000));
    let (tail, size) = rask_storage::read_tail(url, 5000, &o).expect("tail longer than the object");
    assert_eq!((tail.as_ref(), size), (&small[..], 1000));
    assert_eq!(rask_storage::stat(url, &o).expect("stat").size, 1000);

    // 21 MiB through the streaming writer: a multipart upload of 3 parts,
    // read back with concurrent ranged GETs and checked by boto3.
    let big = data(21 << 20, 7);
    let mut w = Writer::create("s3://roundtrip/dir/big.bin", &o).expect("writer");
    for piece in big.chunks(1 << 20) {
        w.write_all(piece).expect("write");
    }
    w.finish().expect("complete the upload");
    let before = rask_storage::counters();
    let back = rask_storage::read_range("s3://roundtrip/dir/big.bin", 0, big.len() as u64, &o).expect("ranged GETs");
    let gets = rask_storage::counters().requests - before.requests;
    assert!(back == big, "the object read back differs");
    assert_eq!(gets, 3, "21 MiB in 8 MiB pieces");
    let checked = moto.python(
        "import hashlib\nb = s3.get_object(Bucket='roundtrip', Key='dir/big.bin')['Body'].read()\n\
         print(len(b), hashlib.sha256(b).hexdigest())",
        &[],
    );
    let (n, _) = checked.trim().split_once(' ').expect("two fields");
    assert_eq!(n, big.len().to_string());

    // A sequential reader over the object, with read-ahead.
    let mut r = rask_storage::Reader::open("s3://roundtrip/dir/big.bin", big.len() as u64, &o).expect("reader");
    let mut all = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut all).expect("read all");
    assert!(all == big);
}

#[test]
fn globs_list_with_pagination() {
    let moto = Moto::start();
    if !moto.run_in_env("globs_list_with_pagination") {
        return;
    }
    moto.create_bucket("many");
    // 1,105 keys: more than one page of ListObjectsV2 (1,000 keys).
    moto.python(
        "for i in range(1100):\n    s3.put_object(Bucket='many', Key=f'data/f{i:04d}.csv', Body=b'a\\n1\\n')\n\
         s3.put_object(Bucket='many', Key='data/sub/x.csv', Body=b'a\\n')\n\
         s3.put_object(Bucket='many', Key='data/notes.txt', Body=b'a\\n')\n\
         s3.put_object(Bucket='many', Key='data/_SUCCESS', Body=b'')\n\
         for i in range(2):\n    s3.put_object(Bucket='many', Key=f'out/part.{i}.parquet', Body=b'x')",
        &[],
    );
    let o = moto.options();
    let urls = rask_storage::expand("s3://many/data/*.csv", &o).expect("glob");
    assert_eq!(urls.len(), 1100);
    assert_eq!(urls[0], "s3://many/data/f0000.csv");
    assert_eq!(urls[1099], "s3://many/data/f1099.csv");
    let deep = rask_storage::expand("s3://many/data/**/*.csv", &o).expect("glob");
    assert!(deep.contains(&"s3://many/data/sub/x.csv".to_string()));
    let dir = rask_storage::expand("s3://many/out/", &o).expect("directory");
    assert_eq!(dir, vec!["s3://many/out/part.0.parquet", "s3://many/out/part.1.parquet"]);
    let none = rask_storage::expand("s3://many/nothing/*.csv", &o).expect_err("no match");
    assert!(matches!(none, StorageError::NoMatch { .. }) && none.to_string().contains("s3://many/nothing/*.csv"));
}

#[test]
fn errors_name_the_url() {
    let moto = Moto::start();
    if !moto.run_in_env("errors_name_the_url") {
        return;
    }
    let o = moto.options();
    moto.create_bucket("present");

    let e = rask_storage::read("s3://absent/x.csv", &o).expect_err("missing bucket");
    assert!(matches!(e, StorageError::NoSuchBucket { .. }), "{e:?}");
    assert!(e.to_string().contains("s3://absent/x.csv") && e.to_string().contains("NoSuchBucket"), "{e}");
    let e = rask_storage::stat("s3://absent/x.csv", &o).expect_err("missing bucket on HEAD");
    assert!(matches!(e, StorageError::NoSuchBucket { .. }), "{e:?}");

    let e = rask_storage::read("s3://present/nope.csv", &o).expect_err("missing key");
    assert!(matches!(e, StorageError::NoSuchKey { .. }), "{e:?}");
    assert!(e.to_string().contains("s3://present/nope.csv") && e.to_string().contains("NoSuchKey"), "{e}");
    let e = rask_storage::stat("s3://present/nope.csv", &o).expect_err("missing key on HEAD");
    assert!(matches!(e, StorageError::NoSuchKey { .. }), "{e:?}");

    let e = rask_storage::expand("s3://absent/*.csv", &o).expect_err("listing a missing bucket");
    assert!(matches!(e, StorageError::NoSuchBucket { .. }), "{e:?}");

    // Nothing listens on this port: refused after the retries, naming both.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let dead =
        StorageOptions::default().endpoint_url(&format!("http://127.0.0.1:{port}")).anonymous(true).max_attempts(2);
    let e = rask_storage::read("s3://present/x.csv", &dead).expect_err("bad endpoint");
    assert!(matches!(e, StorageError::Endpoint { .. }), "{e:?}");
    assert!(e.to_string().contains("s3://present/x.csv") && e.to_string().contains(&port.to_string()), "{e}");

    // An endpoint that accepts connections and never answers: a timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let addr = silent.local_addr().expect("addr");
    let slow = StorageOptions::default()
        .endpoint_url(&format!("http://{addr}"))
        .anonymous(true)
        .max_attempts(2)
        .attempt_timeout_ms(300);
    let started = Instant::now();
    let e = rask_storage::read("s3://present/x.csv", &slow).expect_err("timeout");
    assert!(matches!(e, StorageError::Timeout { .. }), "{e:?}");
    assert!(e.to_string().contains("s3://present/x.csv"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(silent);

    let e = rask_storage::read("gs://b/k", &o).expect_err("unsupported scheme");
    assert!(matches!(e, StorageError::BadUrl { .. }), "{e:?}");
}

#[test]
fn interrupted_uploads_leave_nothing_visible() {
    let moto = Moto::start();
    if !moto.run_in_env("interrupted_uploads_leave_nothing_visible") {
        return;
    }
    let o = moto.options();
    moto.create_bucket("uploads");
    let objects = "r = s3.list_objects_v2(Bucket='uploads')\nprint(sorted(o['Key'] for o in r.get('Contents', [])))\n\
                   u = s3.list_multipart_uploads(Bucket='uploads')\nprint(len(u.get('Uploads', [])))";
    // Two 5 MiB parts uploaded, then the writer is dropped (a task failing
    // mid-write): the upload is aborted, no object appears.
    {
        let mut w = Writer::with_part_size("s3://uploads/out/part.0.csv", &o, 5 << 20).expect("writer");
        w.write_all(&data(12 << 20, 3)).expect("parts go up");
    }
    assert_eq!(moto.python(objects, &[]), "[]\n0\n");
    // A small write dropped unfinished never sent anything.
    {
        let mut w = Writer::create("s3://uploads/small.csv", &o).expect("writer");
        w.write_all(b"a,b\n1,2\n").expect("buffered");
    }
    assert_eq!(moto.python(objects, &[]), "[]\n0\n");
    // Finishing makes it visible, whole.
    let mut w = Writer::with_part_size("s3://uploads/done.bin", &o, 5 << 20).expect("writer");
    w.write_all(&data(11 << 20, 4)).expect("write");
    w.finish().expect("finish");
    assert_eq!(moto.python(objects, &[]), "['done.bin']\n0\n");
    // A finish that fails (the bucket went away) reports the URL and
    // leaves no upload behind.
    let mut w = Writer::with_part_size("s3://uploads/late.bin", &o, 5 << 20).expect("writer");
    w.write_all(&data(6 << 20, 5)).expect("one part up");
    moto.python(
        "s3.delete_object(Bucket='uploads', Key='done.bin')\n\
                 for u in s3.list_multipart_uploads(Bucket='uploads').get('Uploads', []):\n\
                 \x20   s3.abort_multipart_upload(Bucket='uploads', Key=u['Key'], UploadId=u['UploadId'])\n\
                 s3.delete_bucket(Bucket='uploads')",
        &[],
    );
    let e = w.finish().expect_err("the bucket is gone");
    assert!(e.to_string().contains("s3://uploads/late.bin"), "{e}");
}

/// The standard AWS environment (AWS_ENDPOINT_URL, AWS_REGION, access keys
/// through the credentials chain) with default options: signed requests,
/// path-style addressing.
#[test]
fn configured_by_the_environment() {
    let moto = Moto::start();
    if !moto.run_in_env("configured_by_the_environment") {
        return;
    }
    let o = StorageOptions::default();
    moto.create_bucket("envb");
    rask_storage::write("s3://envb/a/b.txt", b"hello", &o).expect("write with env config");
    assert_eq!(rask_storage::read("s3://envb/a/b.txt", &o).expect("read"), &b"hello"[..]);
    assert_eq!(rask_storage::expand("s3://envb/a/*.txt", &o).expect("list"), vec!["s3://envb/a/b.txt"]);
    let body = moto.python("print(s3.get_object(Bucket='envb', Key='a/b.txt')['Body'].read().decode())", &[]);
    assert_eq!(body, "hello\n");
}

/// moto does not enforce permissions, so AccessDenied comes from a small
/// endpoint that refuses every request the way S3 does (403 with an
/// `AccessDenied` error document; HEAD answers carry no body). A failure
/// case only: every success path above runs against moto.
#[test]
fn access_denied_names_the_url_and_is_not_retried() {
    use std::io::{BufRead, BufReader};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let addr = listener.local_addr().expect("addr");
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = std::io::Read::read_exact(&mut reader, &mut body);
            seen.fetch_add(1, Ordering::SeqCst);
            let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>\
                       <Message>Access Denied</Message><RequestId>1</RequestId></Error>";
            let head = request_line.starts_with("HEAD");
            let reply = format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                xml.len(),
                if head { "" } else { xml }
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    let o = StorageOptions::default().endpoint_url(&format!("http://{addr}")).region("us-east-1").anonymous(true);

    let e = rask_storage::read("s3://locked/secret.csv", &o).expect_err("denied GET");
    assert!(matches!(e, StorageError::AccessDenied { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("s3://locked/secret.csv") && text.contains("AccessDenied"), "{text}");
    let e = rask_storage::stat("s3://locked/secret.csv", &o).expect_err("denied HEAD");
    assert!(matches!(e, StorageError::AccessDenied { .. }), "{e:?}");
    let e = rask_storage::expand("s3://locked/*.csv", &o).expect_err("denied listing");
    assert!(matches!(e, StorageError::AccessDenied { .. }), "{e:?}");
    let e = rask_storage::write("s3://locked/out.csv", b"a,b\n1,2\n", &o).expect_err("denied PUT");
    assert!(matches!(e, StorageError::AccessDenied { .. }), "{e:?}");
    assert!(e.to_string().contains("s3://locked/out.csv"), "{e}");
    // A refusal is final: one request per call, no retry storm.
    assert_eq!(requests.load(Ordering::SeqCst), 4);
}
