(pritnln "typo")
