"""Settlement owns charge state: the status names (`status`), the pure rules that move a
charge and say what to post (`rules`), the ledger postings those rules ask for (`postings`),
and the database part that applies them under the charge rows' locks (`store`)."""
