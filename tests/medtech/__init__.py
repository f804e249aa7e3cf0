"""Medtech ALEX (issue 12): the test double (alex_double, alex_fhir, alex_launch), its handle, its tests."""
