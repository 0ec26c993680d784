"""What is kept and for how long (issue 25): calls deleted with everything of theirs, on request
(`DELETE /api/calls/{id}`, erasure of a phone number's calls) or once past an org's retention."""
