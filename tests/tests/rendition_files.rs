//! The rendition's small files on S3 (moto over HTTP): read with their ETag, rewritten only
//! over the version read, deleted idempotently. The caption routes rewrite the master playlist
//! this way.

use exvid_shared::media_bucket::{FileWriteError, RenditionFiles};
use exvid_tests::fresh_bucket;

const MASTER: &str = "org-berlin/exercises/ex-knee-01/video/u1/hls/original.m3u8";

#[tokio::test]
async fn a_rewrite_lands_only_over_the_version_it_read() {
    let bucket = fresh_bucket().await;
    assert_eq!(bucket.get_object(MASTER).await.unwrap(), None);
    // If-Match on a key that does not exist: nothing to rewrite.
    assert!(matches!(
        bucket
            .put_object(
                MASTER,
                b"x".to_vec(),
                "application/vnd.apple.mpegurl",
                Some("\"abc\"")
            )
            .await,
        Err(FileWriteError::Changed)
    ));

    bucket
        .put_object(
            MASTER,
            b"#EXTM3U\n".to_vec(),
            "application/vnd.apple.mpegurl",
            None,
        )
        .await
        .unwrap();
    let first = bucket.get_object(MASTER).await.unwrap().unwrap();
    assert_eq!(first.body, b"#EXTM3U\n");

    // Two writers read the same version; the first rewrite lands, the second is refused.
    bucket
        .put_object(
            MASTER,
            b"#EXTM3U\n#A\n".to_vec(),
            "application/vnd.apple.mpegurl",
            Some(&first.etag),
        )
        .await
        .unwrap();
    assert!(matches!(
        bucket
            .put_object(
                MASTER,
                b"#EXTM3U\n#B\n".to_vec(),
                "application/vnd.apple.mpegurl",
                Some(&first.etag)
            )
            .await,
        Err(FileWriteError::Changed)
    ));
    let now = bucket.get_object(MASTER).await.unwrap().unwrap();
    assert_eq!(now.body, b"#EXTM3U\n#A\n");
    assert_ne!(now.etag, first.etag);

    bucket.delete_object(MASTER).await.unwrap();
    bucket.delete_object(MASTER).await.unwrap();
    assert_eq!(bucket.get_object(MASTER).await.unwrap(), None);
}

#[tokio::test]
async fn a_segment_head_is_a_ranged_read() {
    let bucket = fresh_bucket().await;
    let key = "org-berlin/exercises/ex-knee-01/video/u1/hls/original_720p00000.ts";
    assert_eq!(bucket.get_head(key, 188).await.unwrap(), None);
    let body: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    bucket
        .put_object(key, body.clone(), "video/mp2t", None)
        .await
        .unwrap();
    assert_eq!(
        bucket.get_head(key, 188).await.unwrap().unwrap(),
        body[..188]
    );
    // Longer than the object: all of it.
    assert_eq!(bucket.get_head(key, 1 << 20).await.unwrap().unwrap(), body);
}
