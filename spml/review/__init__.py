"""spml-review: choose the questions worth a person's answer, ask them (a CSV or Label Studio), merge the answers
into the training annotations as verified positives and negatives. No torch here: it runs where the labeler runs."""
