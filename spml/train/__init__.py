"""Stage 1 and 4: train a teacher on single positives, or a student on pseudo labels."""
