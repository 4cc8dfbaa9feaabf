"""ssh keys: the one reader (`read`), the wire format (`wire`), PuTTY files (`ppk`) and key pairs
made or converted (`generate`)."""
