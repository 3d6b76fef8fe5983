//! Bunny's caption calls (`Video_AddCaption`, `Video_DeleteCaption`) from the real client
//! against the fake Bunny server speaking the documented wire format: the file travels base64
//! in JSON, the video lists its tracks, a replaced track is the newer one, a delete of a gone
//! track succeeds, outages are retried, and a language that is not a tag never leaves.

use exvid_shared::bunny::client::{BunnyApi, BunnyCaptions, BunnyClient, BunnyError, Deleted};
use exvid_shared::domain::ids::BunnyGuid;
use exvid_tests::fake_bunny::{FakeBunny, Fault};
use serde_json::json;

const LIBRARY: u64 = 133;
const API_KEY: &str = "bunny-library-api-key-0001";
const VTT: &str = "WEBVTT\n\n00:01.000 --> 00:04.000\nKnie über den Zehen – halten\n";

async fn video(client: &BunnyClient) -> BunnyGuid {
    BunnyGuid::parse(&client.create_video("ex-knee-01").await.unwrap().guid).unwrap()
}

#[tokio::test]
async fn a_track_is_added_replaced_listed_and_deleted() {
    let bunny = FakeBunny::start(LIBRARY, API_KEY, "ro");
    let client = bunny.client();
    let guid = video(&client).await;
    let g = guid.to_string();

    client
        .add_caption(&guid, "de", "Deutsch", VTT)
        .await
        .unwrap();
    assert_eq!(
        bunny.caption(&g, "de"),
        Some(("Deutsch".into(), VTT.into()))
    );
    // Replacing the language's track: Bunny keeps the newer file.
    let newer = VTT.replace("halten", "zehn Sekunden halten");
    client
        .add_caption(&guid, "de", "Deutsch", &newer)
        .await
        .unwrap();
    client
        .add_caption(&guid, "en", "English", VTT)
        .await
        .unwrap();
    assert_eq!(bunny.caption(&g, "de").unwrap().1, newer);
    assert_eq!(
        bunny.video(&g).unwrap()["captions"],
        json!([{"srclang": "de", "label": "Deutsch"}, {"srclang": "en", "label": "English"}])
    );

    assert_eq!(
        client.delete_caption(&guid, "de").await.unwrap(),
        Deleted::Removed
    );
    assert_eq!(
        client.delete_caption(&guid, "de").await.unwrap(),
        Deleted::AlreadyGone
    );
    assert_eq!(bunny.caption(&g, "de"), None);
    assert_eq!(
        bunny.video(&g).unwrap()["captions"],
        json!([{"srclang": "en", "label": "English"}])
    );
}

#[tokio::test]
async fn an_outage_is_retried_a_refusal_is_not_and_a_bad_tag_never_leaves() {
    let bunny = FakeBunny::start(LIBRARY, API_KEY, "ro");
    let client = bunny.client();
    let guid = video(&client).await;

    // Adding a track twice is harmless, so a 5xx is retried even though it is a POST.
    bunny.fail_next(&[Fault::Status(503), Fault::Status(500)]);
    client
        .add_caption(&guid, "en", "English", VTT)
        .await
        .unwrap();
    assert_eq!(bunny.calls("add caption", None), 1);

    bunny.fail_next(&[Fault::Refuse]);
    assert!(matches!(
        client.add_caption(&guid, "en", "English", VTT).await,
        Err(BunnyError::Rejected { .. })
    ));

    bunny.reset_calls();
    for bad in ["../x", "de/en", "", "de?x=1"] {
        assert!(matches!(
            client.add_caption(&guid, bad, "x", VTT).await,
            Err(BunnyError::Malformed { .. })
        ));
        assert!(client.delete_caption(&guid, bad).await.is_err());
    }
    assert_eq!(bunny.calls("add caption", None), 0);
    assert_eq!(bunny.calls("delete caption", None), 0);

    // A video Bunny does not have: adding is a NotFound, deleting is already done.
    let gone = BunnyGuid::parse("8a1c2d3e-0000-4000-8000-0000000000ff").unwrap();
    assert!(matches!(
        client.add_caption(&gone, "en", "English", VTT).await,
        Err(BunnyError::NotFound)
    ));
    assert_eq!(
        client.delete_caption(&gone, "en").await.unwrap(),
        Deleted::AlreadyGone
    );
}

#[tokio::test]
async fn a_transcription_asks_for_captions_only_and_checks_its_languages() {
    let bunny = FakeBunny::start(LIBRARY, API_KEY, "ro");
    let client = bunny.client();
    let guid = video(&client).await;
    client
        .transcribe(&guid, Some("de"), &["de".into(), "en".into()])
        .await
        .unwrap();
    let asked = bunny.transcriptions();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].0, guid.to_string());
    assert_eq!(asked[0].1, "force=true");
    assert_eq!(
        asked[0].2,
        json!({"targetLanguages": ["de", "en"], "sourceLanguage": "de", "generateTitle": false,
               "generateDescription": false, "generateChapters": false, "generateMoments": false})
    );
    // Unknown source language: null, as Bunny's schema allows.
    client
        .transcribe(&guid, None, &["en".into()])
        .await
        .unwrap();
    assert_eq!(bunny.transcriptions()[1].2["sourceLanguage"], json!(null));
    // A language that is not a tag never leaves.
    assert!(matches!(
        client.transcribe(&guid, None, &["../x".into()]).await,
        Err(BunnyError::Malformed { .. })
    ));
    assert_eq!(bunny.transcriptions().len(), 2);
}
