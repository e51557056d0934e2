"""What OCSSD 2.0 and OCSSD 1.2 share: the vector command's address list, fault
injection, the data-then-OOB scatter and the Identify Namespace skeleton. Both
kinds import this package; neither imports the other."""
