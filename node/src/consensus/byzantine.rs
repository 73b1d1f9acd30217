//! The lies a Byzantine validator tells through the consensus application, for the fault suites
//! (`crate::faults`, test builds only). Each function makes the bytes an attacker would send; the
//! honest path of [`super::app`] must refuse every one of them.

use super::context::{CheckpointExt, ProposalPart};
use sabt_core::block::Block;
use sabt_core::codec;
use sabt_core::hash::Hash32;

/// `block` with other transactions under the same header: the first two swapped (same count,
/// another root), the only one altered, or, in an empty block, one made up.
pub fn swapped_body(block: &Block) -> Option<Block> {
    let mut b = block.clone();
    match b.txs.len() {
        0 => {
            let key = sabt_core::sign::SecretKey::from_seed(&[0x42; 32]);
            let tx = sabt_core::tx::Transaction {
                chain_id: b.header.chain_id.clone(),
                signer: key.public(),
                nonce: 0,
                body: sabt_core::tx::TxBody::AnchorBatch(sabt_core::entry::BatchAnchor {
                    root: Hash32([0x42; 32]),
                    size: 1,
                    kind: sabt_core::entry::RecordKind::Other,
                }),
            };
            b.txs.push(tx.sign(&key));
        }
        1 => b.txs[0].tx.nonce = b.txs[0].tx.nonce.wrapping_add(1),
        _ => b.txs.swap(0, 1),
    }
    Some(b)
}

/// `part` carrying a swapped body under its header (and its proposer's signature), if its block
/// decodes and has transactions.
pub fn swapped_part(part: &ProposalPart) -> Option<ProposalPart> {
    let block: Block = codec::decode(&part.block).ok()?;
    let forged = swapped_body(&block)?;
    Some(ProposalPart { block: std::sync::Arc::new(codec::encode(&forged)), ..part.clone() })
}

/// The bad parts sent before a real one: a bad signature, a block cut in half (it does not
/// decode), and a block padded to one byte over `max_block_bytes`.
pub fn bad_parts(part: &ProposalPart, max_block_bytes: u64) -> Vec<ProposalPart> {
    let mut bad_signature = part.clone();
    bad_signature.signature.0[0] ^= 1;
    let cut = ProposalPart { block: std::sync::Arc::new(part.block[..part.block.len() / 2].to_vec()), ..part.clone() };
    let mut padded = part.block.to_vec();
    let limit = usize::try_from(max_block_bytes).unwrap_or(usize::MAX);
    padded.resize(limit.saturating_add(1).max(padded.len() + 1), 0);
    let oversized = ProposalPart { block: std::sync::Arc::new(padded), ..part.clone() };
    vec![bad_signature, cut, oversized]
}

/// A checkpoint cosignature for another log root than the block's.
pub fn wrong_extension(ext: CheckpointExt) -> CheckpointExt {
    let mut root = ext.root.0;
    root[31] ^= 0xff;
    CheckpointExt { size: ext.size, root: Hash32(root) }
}

/// A committed block as a forging sync peer serves it: the `n`th answer altered (its
/// transactions no longer its header's), or cut short, in turn.
pub fn forged_sync_block(bytes: &[u8], n: u64) -> Vec<u8> {
    if n.is_multiple_of(2)
        && let Ok(block) = codec::decode::<Block>(bytes)
        && let Some(forged) = swapped_body(&block)
    {
        return codec::encode(&forged);
    }
    bytes[..bytes.len() / 2].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sabt_core::block::BlockHeader;

    fn block(txs: usize) -> Block {
        let key = sabt_core::sign::SecretKey::from_seed(&[7; 32]);
        let txs: Vec<_> = (0..txs)
            .map(|i| {
                sabt_core::tx::Transaction {
                    chain_id: "c".into(),
                    signer: key.public(),
                    nonce: i as u64,
                    body: sabt_core::tx::TxBody::AnchorBatch(sabt_core::entry::BatchAnchor {
                        root: Hash32([i as u8; 32]),
                        size: 1,
                        kind: sabt_core::entry::RecordKind::Other,
                    }),
                }
                .sign(&key)
            })
            .collect();
        let header = BlockHeader {
            chain_id: "c".into(),
            height: 1,
            time_ms: 1,
            prev_hash: Hash32([0; 32]),
            tx_root: sabt_core::block::tx_root(&txs),
            tx_count: txs.len() as u32,
            log_size: 0,
            log_root: Hash32([0; 32]),
            state_root: Hash32([0; 32]),
            validator_set_hash: Hash32([0; 32]),
            proposer: key.public(),
        };
        Block { header, txs }
    }

    #[test]
    fn every_forgery_is_refused_by_the_body_check() {
        for n in [1, 2, 5] {
            let honest = block(n);
            honest.check_body().unwrap();
            let forged = swapped_body(&honest).unwrap();
            assert_eq!(forged.header, honest.header);
            assert!(forged.check_body().is_err(), "{n} transactions");
            let bytes = codec::encode(&honest);
            for k in 0..2 {
                let served = forged_sync_block(&bytes, k);
                assert!(codec::decode::<Block>(&served).map(|b| b.check_body().is_err()).unwrap_or(true));
            }
        }
        let made_up = swapped_body(&block(0)).unwrap();
        assert!(made_up.check_body().is_err());
    }
}
