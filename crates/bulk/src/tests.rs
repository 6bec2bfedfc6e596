//! Clustering, measured: personalised copies of newsletters (Japanese and English) cluster
//! together, unrelated real mail (the clean corpora) does not; precision and recall over
//! every pair are printed.

use super::*;

const JA: [&str; 12] = [
    "いつも当店をご利用いただき誠にありがとうございます。",
    "冬のセールのお知らせをお届けします。全商品が大幅に値下がりしております。",
    "送料は期間中すべて無料となりますので、この機会をお見逃しなく。",
    "人気の商品は早めに売り切れることがございますので、お早めにご覧ください。",
    "新しく入荷した北海道産の食材を特集いたしました。",
    "店長おすすめの料理の作り方を写真つきでご紹介しています。",
    "年末年始の営業時間は下記のとおりとなります。ご確認をお願いいたします。",
    "会員様限定のポイント二倍キャンペーンを開催中です。",
    "お問い合わせはお電話またはメールにて平日の午前十時から受け付けております。",
    "東京と大阪で開く試食会の日程が決まりましたのでお知らせします。",
    "アンケートにご協力いただいた方の中から抽選で記念品を差し上げます。",
    "今後とも変わらぬご愛顧を賜りますようお願い申し上げます。",
];
const EN: [&str; 12] = [
    "Thank you for being a member of our club for another year.",
    "This month we bring you new arrivals in the store and a recipe of the season.",
    "Our winter sale starts next week, with savings on every order you place.",
    "The dates of our next meetings in Tokyo and Osaka are now fixed.",
    "We have redesigned the website so that you can find your orders faster.",
    "Our kitchen team shares three easy dishes for cold evenings at home.",
    "Please note the opening hours over the holidays listed below.",
    "Members who answer our survey can win one of fifty gift boxes.",
    "Shipping is free for every order above the usual amount this month.",
    "Our support desk answers mail and calls on weekdays from ten in the morning.",
    "A new branch opens in Nagoya in the spring, and you are invited to the opening.",
    "We look forward to seeing you again soon, and thank you for your trust.",
];

/// A newsletter of template `t` personalised for recipient `r`, as a full message: each
/// template its own choice and order of sentences (Japanese for even `t`, English for odd),
/// each copy its own name, member number, amounts and tracking links.
fn newsletter(t: usize, r: usize) -> Vec<u8> {
    let names = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤"];
    let name = names[r % names.len()];
    let member = 100_000 + r * 7919 % 900_000;
    let token: String = (0..24).map(|i| char::from(b'a' + ((r * 31 + i * 7 + t) % 26) as u8)).collect();
    let pool: &[&str] = if t.is_multiple_of(2) { &JA } else { &EN };
    // six sentences, chosen and ordered by the template
    let picked: Vec<&str> = (0..6).map(|i| pool[(t / 2 * 5 + i * (t / 2 % 5 + 1) + i) % pool.len()]).collect();
    let body = if t.is_multiple_of(2) {
        format!(
            "{name}様（会員番号 {member}）\r\n\r\n{}\r\n今回のお買い物でご利用いただけるクーポンは {pct} 円分です。\r\n\
             詳しくは https://shop.example.jp/news/{t}?uid={member}&tk={token} をご覧ください。\r\n\
             配信停止 https://shop.example.jp/unsub/{token}0{member}\r\n",
            picked.join(""),
            pct = 500 + r * 10
        )
    } else {
        format!(
            "Dear {name} (member {member}),\r\n\r\n{}\r\nYour personal code is {token}, worth {pct} yen.\r\n\
             Read it online at https://club.example.com/letters/{t}?m={member}&c={token}\r\n\
             To stop these letters: https://club.example.com/stop/{token}{member}\r\n",
            picked.join(" "),
            pct = 300 + r
        )
    };
    format!(
        "From: news@shop.example.jp\r\nTo: {member}@customer.example\r\nSubject: =?UTF-8?B?{}?=\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}",
        base64_of(&format!("Newsletter {t} for {name}"))
    )
    .into_bytes()
}

fn base64_of(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Real mail from the clean corpora: unrelated messages.
fn corpus_messages() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in ["spamassassin-tdata", "stalwart-mail-parser", "ruby-mail-gem", "cpython-test-email", "james-mime4j"] {
        for p in testkit::corpus::files_in(&testkit::corpus::dir().join(dir)) {
            let Ok(bytes) = std::fs::read(&p) else { continue };
            if bytes.len() < 1 << 20 && bytes.windows(2).any(|w| w == b"\n\n" || w == b"\r\n") {
                out.push(bytes);
            }
        }
    }
    out
}

#[test]
fn personalised_copies_cluster_and_unrelated_mail_does_not() {
    let (templates, copies) = (20, 30);
    let mut items: Vec<(Vec<u8>, Option<usize>)> = Vec::new();
    for t in 0..templates {
        for r in 0..copies {
            items.push((newsletter(t, r), Some(t)));
        }
    }
    let corpus = corpus_messages();
    assert!(corpus.len() > 200, "the corpora: {}", corpus.len());
    items.extend(corpus.into_iter().map(|m| (m, None)));
    let mut clusters = Clusters::default();
    let assigned: Vec<u64> = items.iter().map(|(m, _)| clusters.add(&fingerprint(m), 1, 0)).collect();
    // pairs: same truth (a template) vs same cluster
    let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
    let mut corpus_alike = 0u64;
    for i in 0..items.len() {
        for j in i + 1..items.len() {
            let truth = items[i].1.is_some() && items[i].1 == items[j].1;
            let said = assigned[i] == assigned[j];
            match (truth, said) {
                (true, true) => tp += 1,
                (true, false) => fn_ += 1,
                // two corpus messages judged alike: the corpora hold variants of the same
                // texts (SpamAssassin's DNSBL test letters, say), counted apart
                (false, true) if items[i].1.is_none() && items[j].1.is_none() => corpus_alike += 1,
                (false, true) => fp += 1,
                (false, false) => {}
            }
        }
    }
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    let recall = tp as f64 / (tp + fn_).max(1) as f64;
    println!(
        "bulk clustering: {} messages ({} newsletters x {} personalised copies, {} unrelated real messages): \
         precision {:.4}, recall {:.4} over {} same-template pairs ({} false pairs, {} missed); \
         {} pairs of corpus messages judged alike (variants of the same test texts)",
        items.len(),
        templates,
        copies,
        items.len() - templates * copies,
        precision,
        recall,
        tp + fn_,
        fp,
        fn_,
        corpus_alike
    );
    assert!(precision >= 0.99, "precision {precision}");
    assert!(recall >= 0.95, "recall {recall}");
    // a whole campaign counts its copies in one cluster
    let mut c = Clusters::default();
    let mut ids = std::collections::HashSet::new();
    for r in 0..5000 {
        ids.insert(c.add(&fingerprint(&newsletter(4, r)), 1, 1_000_000));
    }
    let biggest = c.iter().map(|k| k.copies_since(0)).max().unwrap();
    assert!(biggest >= 4900, "5,000 personalised copies: the largest cluster holds {biggest} ({} clusters)", ids.len());
}

#[test]
fn short_messages_join_by_subject_and_attachments_only() {
    let m = |subject: &str, attachment: &str| {
        format!(
            "Subject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
             Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: image/png; name=a.png\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{attachment}\r\n--b--\r\n"
        )
        .into_bytes()
    };
    let mut c = Clusters::default();
    let a = c.add(&fingerprint(&m("Flyer", "iVBORw0KGgoAAAANSUhEUg==")), 100, 0);
    let b = c.add(&fingerprint(&m("Flyer", "iVBORw0KGgoAAAANSUhEUg==")), 100, 0);
    let other = c.add(&fingerprint(&m("Flyer", "R0lGODlhAQABAAAAACw=")), 1, 0);
    assert_eq!(a, b, "the same image and subject");
    assert_ne!(a, other, "another image");
    assert_eq!(c.get(a).unwrap().copies_since(0), 200);
}

/// Every message and archive of the corpora — malformed mail, parser bombs, binary files —
/// fingerprints without a panic (the meter sees whatever the gateway accepted).
#[test]
fn every_corpus_file_fingerprints() {
    let mut n = 0;
    for p in testkit::corpus::files() {
        let Ok(bytes) = std::fs::read(&p) else { continue };
        let fp = fingerprint(&bytes);
        assert!(fp.attachments.len() <= mime::MAX_PARTS, "{}", p.display());
        n += 1;
    }
    assert!(n > 500, "{n} files");
}
