//! An independent check of cosign-format signatures, on sigstore-rs (see Cargo.toml).
//!
//! ```text
//! sigstore-verifier verify IMAGE@DIGEST PUBLIC_KEY      # .sig: exit 0 when a signature verifies
//! sigstore-verifier attestations IMAGE@DIGEST PUBLIC_KEY  # .att: prints each verified statement
//! sigstore-verifier gen-key DIR PASSWORD                # DIR/sigstore.key (encrypted), .pub
//! sigstore-verifier read-key KEY PASSWORD               # prints the key's public key PEM
//! ```
//! Registries are reached over plain HTTP (the tests' registry on 127.0.0.1), anonymously.
//! Errors go to stderr with exit status 1.

use base64::Engine as _;
use sigstore::cosign::verification_constraint::{PublicKeyVerifier, VerificationConstraintVec};
use sigstore::cosign::{ClientBuilder, CosignCapabilities};
use sigstore::crypto::signing_key::ecdsa::{ECDSAKeys, EllipticCurve};
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::{CosignVerificationKey, Signature, SigningScheme};
use sigstore::registry::{Auth, ClientConfig, ClientProtocol, OciReference};
use sigstore::trust::ManualTrustRoot;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["verify", image, key] => verify(image, key).await,
        ["attestations", image, key] => attestations(image, key).await,
        ["gen-key", dir, password] => gen_key(dir, password),
        ["read-key", key, password] => read_key(key, password),
        _ => Err("usage: sigstore-verifier verify|attestations IMAGE@DIGEST KEY.pub | gen-key DIR PASSWORD | read-key KEY PASSWORD".into()),
    };
    if let Err(e) = result {
        eprintln!("sigstore-verifier: {e}");
        std::process::exit(1);
    }
}

/// sigstore-rs's own path: the `.sig` layers of the image (`trusted_signature_layers`: the
/// payload's digest checked against the image's), then `verify_constraints` with the key.
async fn verify(image: &str, key: &str) -> Result<()> {
    let trust_root = ManualTrustRoot::default();
    let mut client = ClientBuilder::default()
        .with_oci_client_config(ClientConfig {
            protocol: ClientProtocol::Http,
            ..ClientConfig::default()
        })
        .with_trust_repository(&trust_root)?
        .build()?;
    let image: OciReference = image.parse()?;
    let layers = client
        .trusted_signature_layers(&Auth::Anonymous, &image)
        .await?;
    let pem = std::fs::read(key)?;
    let constraints: VerificationConstraintVec = vec![Box::new(PublicKeyVerifier::new(
        &pem,
        &SigningScheme::ECDSA_P256_SHA256_ASN1,
    )?)];
    sigstore::cosign::verify_constraints(&layers, constraints.iter()).map_err(|e| {
        format!(
            "{} signature layer(s), none satisfies the key: {e:?}",
            layers.len()
        )
    })?;
    println!("verified: {} signature layer(s)", layers.len());
    Ok(())
}

/// DSSE's pre-authentication encoding (the DSSE v1 protocol), written here from the spec.
fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// The `.att` manifest of IMAGE@DIGEST (cosign's tag `sha256-<hex>.att`): each DSSE layer's
/// signature checked with sigstore-rs's verification key over the PAE; prints each statement
/// on a line of its own. Fails when there is none, or one does not verify.
async fn attestations(image: &str, key: &str) -> Result<()> {
    let (repo, digest) = image.split_once('@').ok_or("give IMAGE@sha256:…")?;
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or("the digest is not sha256")?;
    let reference: oci_client::Reference = format!("{repo}:sha256-{hex}.att").parse()?;
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let auth = oci_client::secrets::RegistryAuth::Anonymous;
    let (manifest, _) = client
        .pull_manifest_raw(
            &reference,
            &auth,
            &["application/vnd.oci.image.manifest.v1+json"],
        )
        .await?;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest)?;
    let pem = std::fs::read(key)?;
    let key = CosignVerificationKey::from_pem(&pem, &SigningScheme::ECDSA_P256_SHA256_ASN1)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut count = 0;
    for layer in manifest["layers"]
        .as_array()
        .ok_or("the .att manifest has no layers")?
    {
        if layer["mediaType"] != "application/vnd.dsse.envelope.v1+json" {
            continue;
        }
        let mut blob = Vec::new();
        let digest = layer["digest"].as_str().ok_or("a layer without a digest")?;
        client.pull_blob(&reference, digest, &mut blob).await?;
        let envelope: serde_json::Value = serde_json::from_slice(&blob)?;
        let payload_type = envelope["payloadType"].as_str().ok_or("no payloadType")?;
        let body = b64.decode(envelope["payload"].as_str().ok_or("no payload")?)?;
        let sig = b64.decode(
            envelope["signatures"][0]["sig"]
                .as_str()
                .ok_or("no signature")?,
        )?;
        key.verify_signature(Signature::Raw(&sig), &pae(payload_type, &body))
            .map_err(|e| format!("attestation {digest} does not verify: {e}"))?;
        println!("{}", String::from_utf8(body)?);
        count += 1;
    }
    if count == 0 {
        return Err("no DSSE attestation under the .att tag".into());
    }
    Ok(())
}

fn gen_key(dir: &str, password: &str) -> Result<()> {
    let keys = SigStoreKeyPair::ECDSA(ECDSAKeys::new(EllipticCurve::P256)?);
    let dir = std::path::Path::new(dir);
    std::fs::write(
        dir.join("sigstore.key"),
        keys.private_key_to_encrypted_pem(password.as_bytes())?
            .as_bytes(),
    )?;
    std::fs::write(dir.join("sigstore.pub"), keys.public_key_to_pem()?)?;
    Ok(())
}

fn read_key(key: &str, password: &str) -> Result<()> {
    let keys = SigStoreKeyPair::from_encrypted_pem(&std::fs::read(key)?, password.as_bytes())?;
    print!("{}", keys.public_key_to_pem()?);
    Ok(())
}
