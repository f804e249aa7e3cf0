"""SMART App Launch (issue 13): the EHR test double (ehr_double, ehr_auth, ehr_fhir), handle, tests."""
