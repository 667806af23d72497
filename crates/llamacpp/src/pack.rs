//! Packing many scoring requests into shared decode calls.
//!
//! Requests are laid out as a prefix tree (a trie over their input tokens): a token that
//! several requests share at the same position (an item's context, read by each of its
//! choices; few-shot examples that consecutive items share) is one node, decoded once into a
//! unified KV cache with every one of those requests' sequence ids. llama.cpp's attention
//! mask then lets each sequence see exactly its own tokens, as llama-perplexity's HellaSwag
//! scorer does with an item's context. Requests are packed in order until the tree would
//! outgrow the cache or the sequences run out; each pack is decoded from an empty cache in
//! batches of the context's batch size, with logits only where some request scores.
//!
//! This is planning only (no llama.cpp calls), so it is tested on its own.

use std::collections::HashMap;

use lmdensity_backend::{ScoreRequest, TokenId};

/// One token of a pack, decoded once for every sequence that reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// The token.
    pub token: TokenId,
    /// Its position in each of its sequences.
    pub pos: usize,
    /// The sequences (indices into the pack's requests) whose input holds it here.
    pub seqs: Vec<usize>,
    /// Whether some sequence scores the logits computed at this token.
    pub logits: bool,
}

/// Requests decoded together from an empty cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pack {
    /// Indices of the requests packed, in order; request `requests[s]` is sequence `s`.
    pub requests: Vec<usize>,
    /// Nodes in decode order: a node comes after its predecessor, so along every sequence
    /// positions increase, as llama.cpp requires of a batch and across batches.
    pub nodes: Vec<Node>,
    /// For each sequence, the node holding each of its input positions.
    pub paths: Vec<Vec<usize>>,
}

/// Packs `requests` (inputs: every token but the last) in order into packs of at most `cells`
/// distinct tokens and `max_seqs` sequences. A request longer than `cells` gets a pack of its
/// own (the caller sizes the cache so that does not happen).
pub(crate) fn plan(requests: &[ScoreRequest], cells: usize, max_seqs: usize) -> Vec<Pack> {
    let mut packs = Vec::new();
    let mut current = Builder::default();
    for (index, request) in requests.iter().enumerate() {
        let input = &request.tokens[..request.tokens.len() - 1];
        let full = current.requests.len() >= max_seqs.max(1);
        if !current.requests.is_empty()
            && (full || current.nodes.len() + current.new_nodes(input) > cells)
        {
            packs.push(std::mem::take(&mut current).finish(requests));
        }
        current.add(index, input);
    }
    if !current.requests.is_empty() {
        packs.push(current.finish(requests));
    }
    packs
}

/// A pack being filled: the trie's nodes and the children of each (node, token).
#[derive(Default)]
struct Builder {
    requests: Vec<usize>,
    nodes: Vec<Node>,
    paths: Vec<Vec<usize>>,
    /// (parent node or `usize::MAX` for the root, token) → child node.
    children: HashMap<(usize, TokenId), usize>,
}

impl Builder {
    /// Nodes `input` would add: its length less the prefix already in the tree.
    fn new_nodes(&self, input: &[TokenId]) -> usize {
        let mut parent = usize::MAX;
        for (matched, &token) in input.iter().enumerate() {
            match self.children.get(&(parent, token)) {
                Some(&child) => parent = child,
                None => return input.len() - matched,
            }
        }
        0
    }

    fn add(&mut self, index: usize, input: &[TokenId]) {
        let seq = self.requests.len();
        self.requests.push(index);
        let mut parent = usize::MAX;
        let mut path = Vec::with_capacity(input.len());
        for (pos, &token) in input.iter().enumerate() {
            let node = match self.children.get(&(parent, token)) {
                Some(&child) => child,
                None => {
                    self.nodes.push(Node {
                        token,
                        pos,
                        seqs: Vec::new(),
                        logits: false,
                    });
                    let child = self.nodes.len() - 1;
                    self.children.insert((parent, token), child);
                    child
                }
            };
            self.nodes[node].seqs.push(seq);
            path.push(node);
            parent = node;
        }
        self.paths.push(path);
    }

    /// Marks the nodes whose logits some sequence scores (positions from `score_from − 1`).
    fn finish(mut self, requests: &[ScoreRequest]) -> Pack {
        for (path, &index) in self.paths.iter().zip(&self.requests) {
            for &node in &path[requests[index].score_from - 1..] {
                self.nodes[node].logits = true;
            }
        }
        Pack {
            requests: self.requests,
            nodes: self.nodes,
            paths: self.paths,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(tokens: &[TokenId], score_from: usize) -> ScoreRequest {
        ScoreRequest {
            tokens: tokens.to_vec(),
            score_from,
        }
    }

    #[test]
    fn an_items_choices_share_their_context_nodes_and_score_only_their_tails() {
        // Context 1 2 3, choices "4 5" and "6"; inputs drop each request's last token.
        let requests = [request(&[1, 2, 3, 4, 5], 3), request(&[1, 2, 3, 6], 3)];
        let packs = plan(&requests, 64, 8);
        assert_eq!(packs.len(), 1);
        let pack = &packs[0];
        let tokens: Vec<TokenId> = pack.nodes.iter().map(|n| n.token).collect();
        assert_eq!(tokens, vec![1, 2, 3, 4], "the context is decoded once");
        assert_eq!(pack.nodes[2].seqs, vec![0, 1]);
        assert_eq!(pack.nodes[3].seqs, vec![0]);
        let logits: Vec<bool> = pack.nodes.iter().map(|n| n.logits).collect();
        assert_eq!(
            logits,
            vec![false, false, true, true],
            "token 3's row predicts both choices' first token"
        );
        assert_eq!(pack.paths, vec![vec![0, 1, 2, 3], vec![0, 1, 2]]);
    }

    #[test]
    fn packs_close_when_the_cache_or_the_sequences_run_out_and_keep_request_order() {
        let requests: Vec<ScoreRequest> = (0..5).map(|i| request(&[100 + i, 1, 2, 3], 1)).collect();
        let by_cells = plan(&requests, 7, 64);
        let sizes: Vec<Vec<usize>> = by_cells.iter().map(|p| p.requests.clone()).collect();
        assert_eq!(
            sizes,
            vec![vec![0, 1], vec![2, 3], vec![4]],
            "3 nodes each, 7 cells"
        );
        let by_seqs = plan(&requests, 1000, 2);
        assert_eq!(by_seqs.len(), 3);
        assert!(by_cells.iter().all(|p| p.nodes.len() <= 7));
    }

    #[test]
    fn shared_prefixes_across_items_fit_more_items_in_a_pack() {
        // Two items with the same 6-token few-shot prefix: the second adds only its own tail.
        let shots = [9, 9, 8, 8, 7, 7];
        let a: Vec<TokenId> = shots.iter().copied().chain([1, 2]).collect();
        let b: Vec<TokenId> = shots.iter().copied().chain([3, 4]).collect();
        let packs = plan(&[request(&a, 6), request(&b, 6)], 8, 8);
        assert_eq!(packs.len(), 1, "7 + 1 distinct input tokens fit 8 cells");
        assert_eq!(packs[0].nodes[5].seqs, vec![0, 1]);
    }

    #[test]
    fn along_every_sequence_nodes_come_in_decode_order() {
        let requests = [
            request(&[1, 2, 3, 4], 1),
            request(&[1, 5, 6], 1),
            request(&[1, 5, 7, 8, 9], 1),
            request(&[2, 2], 1),
        ];
        for pack in plan(&requests, 100, 8) {
            for path in &pack.paths {
                assert!(path.windows(2).all(|w| w[0] < w[1]));
                for (pos, &node) in path.iter().enumerate() {
                    assert_eq!(pack.nodes[node].pos, pos);
                }
            }
        }
    }
}
