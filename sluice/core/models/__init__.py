"""Models before any training: a base model resolved to a local folder and
fingerprinted (a folder, a Hub id, a registered model), the offline catalog
(real models shipped in wheels), the tiny test model, and what a chat
template says about a conversation (whose tokens are the assistant's, where
a turn ends). Training, evaluation and serving all build on these."""
