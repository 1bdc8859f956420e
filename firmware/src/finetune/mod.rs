//! On-device contrastive fine-tuning (issue 6). So far: the replay buffer with
//! diversity-aware admission ([`replay`]); the trainer, negatives queue and model slots build on it.

pub mod replay;
