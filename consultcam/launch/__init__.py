"""EMR launch: how an EMR opens consultcam for the patient on its screen and signs the clinician in.

`medtech` is the Medtech ALEX Apps launch (`GET /launch/medtech?context=&signature=`, docs/medtech.md):
the context is decoded only by ALEX, the patient is read from ALEX, the GP is signed in for that provider
and facility, and the patient's capture session opens or resumes. SMART App Launch is issue 13.
"""
