/** OHIF 3.13 configuration for mammo-node (served by node/viewer.py as /app-config.js).
 *
 * DICOMweb goes to /dicom-web on the same origin: node/viewer.py proxies it to Orthanc and
 * adds Orthanc's credentials there, so no password is ever in the browser. The proxy is
 * read-only, so uploads and SR/SEG export from the viewer are off.
 */
const dicomweb = window.location.origin + '/dicom-web';

window.config = {
  name: 'mammo-node',
  routerBasename: '/',
  extensions: [],
  modes: [],
  customizationService: [
    {
      // No onboarding tour popping over the images.
      'ohif.tours': { $set: [] },
      // The report's exam- and breast-level scores are measurement groups with no image
      // region; OHIF 3.13's SR viewport reads coords[0] of every group and crashes on them.
      // Give such a group an empty region so OHIF skips it (it stays in the report).
      onBeforeSRAddMeasurement: {
        $set: ({ measurement }) =>
          measurement.coords && measurement.coords.length ? measurement : { ...measurement, coords: [{}] },
      },
    },
  ],
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  allowMultiSelectExport: false,
  // The node's results are AI output for research: the dialog would hide the images.
  investigationalUseDialog: { option: 'never' },
  maxNumRequests: { interaction: 100, thumbnail: 5, prefetch: 10 },
  showErrorDetails: 'always',
  defaultDataSourceName: 'orthanc',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'orthanc',
      configuration: {
        friendlyName: 'mammo-node (Orthanc)',
        name: 'orthanc',
        wadoUriRoot: dicomweb,
        qidoRoot: dicomweb,
        wadoRoot: dicomweb,
        qidoSupportsIncludeField: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: false,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        staticWado: false,
        dicomUploadEnabled: false,
        singlepart: 'bulkdata,video',
        bulkDataURI: { enabled: true, relativeResolution: 'studies' },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
