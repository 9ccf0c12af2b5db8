"""The data stage: dataset kinds and their canonical form, readers for every
source, cleaning, data contracts and their validation with Great
Expectations, and the ingest batch that write–audit–publish moves through
the data lake."""
